"""A step ramp for Locust: new users arrive three a second up to the next step, the step is
held, and so on up to a ceiling, which is held too; then the run ends.

Holding each step is what makes the figures per user count readable: Locust's percentiles
in its history CSV cover the last ten seconds, so a hold of at least that long ends with
percentiles measured at that user count alone (loadtests/locust/plot.py reads them there).

Given to Locust beside the users (``-f locustfile.py,step_ramp.py``); its settings come from
the environment, since a shape takes no command-line options of its own:

- ``GEOLEDGER_RAMP_CEILING``: the largest number of users (default 300).
- ``GEOLEDGER_RAMP_STEP``: users added per step (default 30).
- ``GEOLEDGER_RAMP_HOLD_SECS``: how long each step is held once reached (default 15).
- ``GEOLEDGER_RAMP_SPAWN_RATE``: users started per second (default 3, the guide's pace).
"""

import math
import os

from locust import LoadTestShape


def setting(name, default):
    return float(os.environ.get(name, default))


class StepRamp(LoadTestShape):
    ceiling = int(setting("GEOLEDGER_RAMP_CEILING", 300))
    step = int(setting("GEOLEDGER_RAMP_STEP", 30))
    hold = setting("GEOLEDGER_RAMP_HOLD_SECS", 15)
    spawn_rate = setting("GEOLEDGER_RAMP_SPAWN_RATE", 3)

    def levels(self):
        """The user counts held, in order: every multiple of the step below the ceiling,
        then the ceiling."""
        steps = math.ceil(self.ceiling / self.step)
        return [min((i + 1) * self.step, self.ceiling) for i in range(steps)]

    def tick(self):
        elapsed = self.get_run_time()
        previous = 0
        for level in self.levels():
            # Reaching a level takes as long as its new users need to arrive at the spawn rate.
            phase = (level - previous) / self.spawn_rate + self.hold
            if elapsed < phase:
                return level, self.spawn_rate
            elapsed -= phase
            previous = level
        return None

    def duration(self):
        """Seconds the whole ramp takes, for the caller's time bound."""
        previous, total = 0, 0.0
        for level in self.levels():
            total += (level - previous) / self.spawn_rate + self.hold
            previous = level
        return total
