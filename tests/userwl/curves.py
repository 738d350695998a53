"""A user workload that learns for 15 epochs: its validation score is ``x`` at every epoch (so
x = 0.1 is a model at chance level from its first epoch on)."""


def epochs(config, report):
    for epoch in range(1, 16):
        if report(epoch, config["x"]):
            break
    return {"score": config["x"]}
