"""What a study amounts to, for people: the numbers (stats), the timeline and study plots of
``asap report``, and the one palette they share.
"""
