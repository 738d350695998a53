"""asap's entry points: argparse, rich rendering and the terminal chat. Nothing imports them."""
