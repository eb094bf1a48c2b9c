"""Reads the history CSV of a step-ramp Locust run, prints a table per user count and the
saturation point, and draws requests/s, p50 and p95 latency and failures against users.

    plot.py RUN_stats_history.csv --png RUN.png [--title TEXT]

The saturation point is the largest user count at which p95 stays under 1,000 ms with no
failures, this step and every step before it; a step past it that happens to pass again
does not count, since users arriving at that load would already have met the slow one.

Each held step is a run of history rows with the same user count. Its requests/s is the
growth of the total request count across the run divided by the run's length, which needs
no window; its percentiles are those of the last row of the run, which Locust computes over
the last ten seconds, so a hold of ten seconds or more measures that step alone. Failures
are counted from the end of the step before, so the users' arrival is included.
"""

import argparse
import csv
import sys

P95_LIMIT_MS = 1000
# Rows a user count must last to be a held step rather than a moment of the ramp; Locust
# writes a row a second.
MIN_STEP_ROWS = 5


def number(text):
    try:
        return float(text)
    except (TypeError, ValueError):
        return None


def read_history(path):
    """The aggregated rows, in time order, as dicts of numbers."""
    rows = []
    with open(path, newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            if row.get("Name") != "Aggregated":
                continue
            rows.append(
                {
                    "t": number(row["Timestamp"]),
                    "users": int(number(row["User Count"]) or 0),
                    "rps": number(row["Requests/s"]) or 0.0,
                    "fps": number(row["Failures/s"]) or 0.0,
                    "p50": number(row["50%"]),
                    "p95": number(row["95%"]),
                    "requests": int(number(row["Total Request Count"]) or 0),
                    "failures": int(number(row["Total Failure Count"]) or 0),
                }
            )
    return rows


def held_steps(rows):
    """One summary per held user count, in the order they were held."""
    steps, start = [], 0
    failures_before = 0
    for i in range(1, len(rows) + 1):
        if i < len(rows) and rows[i]["users"] == rows[start]["users"]:
            continue
        run = rows[start:i]
        start = i
        if len(run) < MIN_STEP_ROWS or run[0]["users"] == 0:
            continue
        first, last = run[0], run[-1]
        seconds = last["t"] - first["t"]
        steps.append(
            {
                "users": last["users"],
                "seconds": seconds,
                "rps": (last["requests"] - first["requests"]) / seconds if seconds else 0.0,
                "p50": last["p50"],
                "p95": last["p95"],
                "failures": last["failures"] - failures_before,
                "requests": last["requests"],
            }
        )
        failures_before = last["failures"]
    return steps


def passes(step):
    return step["p95"] is not None and step["p95"] < P95_LIMIT_MS and step["failures"] == 0


def saturation(steps):
    """The last step of the leading run of passing steps, or None if the first fails."""
    best = None
    for step in steps:
        if not passes(step):
            break
        best = step
    return best


def ms(value):
    return "n/a" if value is None else f"{value:.0f}"


def print_table(steps, sat, out):
    print(f"{'users':>6} {'held s':>7} {'req/s':>8} {'p50 ms':>7} {'p95 ms':>7} {'failures':>9}  ok", file=out)
    for s in steps:
        print(
            f"{s['users']:>6} {s['seconds']:>7.0f} {s['rps']:>8.1f} {ms(s['p50']):>7} "
            f"{ms(s['p95']):>7} {s['failures']:>9}  {'yes' if passes(s) else 'NO'}",
            file=out,
        )
    if not steps:
        print("saturation: no held step in the history (was the run shorter than one step?)", file=out)
    elif sat is None:
        print(f"saturation: below {steps[0]['users']} users (the first step already fails)", file=out)
    elif sat is steps[-1]:
        print(
            f"saturation: not reached; every step up to the ceiling of {sat['users']} users "
            f"passed ({sat['rps']:.0f} req/s, p95 {ms(sat['p95'])} ms)",
            file=out,
        )
    else:
        print(
            f"saturation: {sat['users']} users ({sat['rps']:.0f} req/s, p95 {ms(sat['p95'])} ms, "
            f"no failures); the next step failed",
            file=out,
        )


def plot(rows, steps, sat, png, title):
    # Imported here so the table can be printed where matplotlib is not installed.
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_rps, ax_lat, ax_fail) = plt.subplots(
        3, 1, sharex=True, figsize=(10, 9), height_ratios=(3, 3, 2)
    )
    fig.suptitle(title, fontsize=11)
    users = [s["users"] for s in steps]
    ramp_users = [r["users"] for r in rows]

    ax_rps.plot(
        ramp_users, [r["rps"] for r in rows], color="0.75", lw=0.8,
        label="Locust's rolling req/s, every second (lags the ramp)",
    )
    ax_rps.plot(users, [s["rps"] for s in steps], "o-", color="tab:blue", label="held step")
    ax_rps.set_ylabel("requests/s")
    ax_rps.legend(loc="upper left", fontsize=8)

    for key, color in (("p50", "tab:green"), ("p95", "tab:orange")):
        points = [(s["users"], s[key]) for s in steps if s[key]]
        ax_lat.plot([u for u, _ in points], [v for _, v in points], "o-", color=color, label=key)
    ax_lat.axhline(P95_LIMIT_MS, color="tab:red", ls="--", lw=1, label="1,000 ms")
    ax_lat.set_yscale("log")
    ax_lat.set_ylabel("latency, ms (log)")
    ax_lat.legend(loc="upper left", fontsize=8)

    ax_fail.bar(users, [s["failures"] for s in steps], width=max(1, min(users or [1]) * 0.6), color="tab:red")
    ax_fail.set_ylim(bottom=0, top=max([1] + [s["failures"] for s in steps]) * 1.15)
    ax_fail.yaxis.get_major_locator().set_params(integer=True)
    ax_fail.set_ylabel("failures per step")
    ax_fail.set_xlabel("concurrent users")

    if sat is not None:
        for ax in (ax_rps, ax_lat, ax_fail):
            ax.axvline(sat["users"], color="0.3", ls=":", lw=1)
        ax_rps.annotate(
            f"saturation {sat['users']} users" if sat is not steps[-1] else f"all {sat['users']} users pass",
            xy=(sat["users"], 0), xycoords=("data", "axes fraction"),
            xytext=(4, 6), textcoords="offset points", fontsize=8,
        )
    for ax in (ax_rps, ax_lat, ax_fail):
        ax.grid(True, which="major", alpha=0.3)
    ax_rps.set_ylim(bottom=0)
    fig.tight_layout()
    fig.savefig(png, dpi=110)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("history", help="Locust's <prefix>_stats_history.csv")
    parser.add_argument("--png", help="where to write the plot")
    parser.add_argument("--title", default="geoledger under a step ramp")
    args = parser.parse_args()

    rows = read_history(args.history)
    # Locust keeps writing rows while its users stop at the end, with falling user counts;
    # those rows describe the shutdown, not a load, and would draw a line back across.
    if rows:
        top = max(r["users"] for r in rows)
        rows = rows[: max(i for i, r in enumerate(rows) if r["users"] == top) + 1]
    steps = held_steps(rows)
    sat = saturation(steps)
    print_table(steps, sat, sys.stdout)
    if args.png:
        plot(rows, steps, sat, args.png, args.title)
        print(f"plot: {args.png}")


if __name__ == "__main__":
    main()
