"""CUDA events for timing tests on a machine without a GPU: every call reports the same time."""


def fixed_events(elapsed_ms: float):
    """A stand-in for torch.cuda.Event whose elapsed_time is always elapsed_ms."""
    class Event:
        def __init__(self, enable_timing):
            pass

        def record(self):
            pass

        def synchronize(self):
            pass

        def elapsed_time(self, end):
            return elapsed_ms
    return Event
