"""The pictures `albgate demo` writes: rollout timelines and the state machine graph, drawn with matplotlib.

Job: turn what a demo run recorded (target states and serving pods after every simulation event, failed
requests, when the rollout started and ended) into timeline PNGs, and an Amazon States Language definition into
a top-down graph of boxes and arrows like the Step Functions console's graph view. grandalf's Sugiyama layout
places the states (cycles broken depth-first from Start, so the loop-back edge of a wait loop points up; rows by
longest path; rows ordered by barycentre sweeps; x by Brandes and Köpf) and the points where a long arrow
crosses a row; the arrows' curves, ports and labels are drawn here.

Invariant: nothing here runs a simulation or calls AWS: the pictures draw only the data they are given. Every
state of the definition appears exactly once in the graph and every transition (Next, each Choice rule,
Default, Catch) as one arrow (two catchers to the same state are one arrow). Figures are drawn on the Agg canvas
directly (no pyplot: no display, no global state), so the command works on a headless machine.
"""

from __future__ import annotations

import math
import textwrap
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from grandalf.graphs import Edge, Vertex, graph_core
from grandalf.layouts import SugiyamaLayout, VertexViewer
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch, Patch
from matplotlib.path import Path as MplPath

DPI = 110
LEAD_SECONDS = 5.0  # drawn before the rollout start: the steady state the rollout begins from

# Colours (colour-blind safe pairs where it matters: healthy green vs draining grey, old blue vs new orange).
TARGET_COLOURS = {"healthy": "#55a868", "initial": "#f2c14e", "unhealthy": "#c44e52", "draining": "#b8b8b8"}
OLD_COLOUR, NEW_COLOUR = "#4c72b0", "#dd8452"
CAUSE_COLOURS = {
    "connection_refused_terminated": "#c44e52",
    "no_routable_target": "#8172b3",
    "pod_not_serving": "#ccb974",
    "app_error": "#da8bc3",
    "killed_in_flight": "#937860",
    "deregistration_delay_expired": "#64b5cd",
}
ROLLOUT_SHADE = "#f4f4f4"


# =========================================================================================================
# Timelines
# =========================================================================================================
@dataclass(frozen=True)
class Sample:
    """The world after one simulation event (only recorded when something here changed)."""

    t: float  # seconds since the rollout started
    healthy: int  # targets by state, summed over the target groups
    initial: int
    unhealthy: int
    draining: int
    old_serving: int  # pods that accept connections (listening, no SIGTERM yet), by version
    new_serving: int


@dataclass
class Trace:
    """One strategy's run, ready to draw. Times are seconds since the rollout started."""

    strategy: str
    summary: str  # one line: outcome, failed requests, rollout time
    samples: list[Sample]
    end: float  # when the measured run ended (after settling)
    rollout_end: float | None  # when the strategy said the rollout ended (None: it never did)
    failures: list[tuple[float, str]]  # (time, cause) of every failed request
    new_ready: list[float] = field(default_factory=list)  # a new pod became Ready (so an old one may go)
    old_version: str = "old version"
    new_version: str = "new version"
    target_groups: str = "the target group"


def _series(trace: Trace, attrs: Sequence[str], x0: float, x1: float) -> tuple[list[float], list[list[int]]]:
    """Step-function points (step='post') from x0 to x1 for the given sample attributes."""
    samples = [s for s in trace.samples if s.t <= x1]
    if not samples:
        return [x0, x1], [[0, 0] for _ in attrs]
    xs = [x0] + [max(s.t, x0) for s in samples[1:]] + [x1]
    ys = [[getattr(samples[0], a)] + [getattr(s, a) for s in samples[1:]] + [getattr(samples[-1], a)] for a in attrs]
    return xs, ys


def _stacked(ax: Any, xs: list[float], ys: list[list[int]], colours: Sequence[str], labels: Sequence[str]) -> None:
    bottom = [0] * len(xs)
    for y, colour, label in zip(ys, colours, labels):
        top = [b + v for b, v in zip(bottom, y)]
        ax.fill_between(xs, bottom, top, step="post", color=colour, label=label, linewidth=0)
        bottom = top


def _failure_bins(trace: Trace, x0: float, x1: float) -> tuple[list[float], dict[str, list[int]]]:
    """Failed requests per second, by cause: left edges of 1 s bins from floor(x0) to ceil(x1)."""
    start, stop = math.floor(x0), math.ceil(x1)
    edges = [float(s) for s in range(start, stop)]
    counts: dict[str, list[int]] = {}
    for t, cause in trace.failures:
        i = math.floor(t) - start
        if 0 <= i < len(edges):
            counts.setdefault(cause, [0] * len(edges))[i] += 1
    ordered = dict(sorted(counts.items(), key=lambda kv: -sum(kv[1])))
    return edges, ordered


def _draw_failures(ax: Any, trace: Trace, x0: float, x1: float, ymax: float | None) -> list[str]:
    """Stacked bars of failed requests per second by cause; returns the causes drawn (most first)."""
    edges, counts = _failure_bins(trace, x0, x1)
    bottom = [0] * len(edges)
    for cause, ys in counts.items():
        ax.bar(edges, ys, width=1.0, align="edge", bottom=bottom, color=CAUSE_COLOURS.get(cause, "#7f7f7f"),
               label=f"{cause} ({sum(ys)})", linewidth=0, zorder=2)
        bottom = [b + y for b, y in zip(bottom, ys)]
    top = ymax if ymax is not None else max([1, *bottom])
    ax.set_ylim(0, top * 1.1 + 0.5)
    if not counts:
        ax.text(0.5, 0.5, "no failed requests", transform=ax.transAxes, ha="center", va="center",
                fontsize=10, color="#2e7d32", fontweight="bold")
    ax.set_ylabel("failed\nrequests / s", fontsize=9)
    return list(counts)


def _mark_rollout(axes: Iterable[Any], trace: Trace, x0: float, x1: float, *, label_ax: Any | None = None) -> None:
    """Shade the rollout, a solid line where it starts and a dashed one where it ends, labelled on label_ax."""
    end = trace.rollout_end
    for ax in axes:
        ax.axvspan(0, end if end is not None else trace.end, color=ROLLOUT_SHADE, zorder=0)
        ax.axvline(0, color="#222222", linewidth=1.2, zorder=3)
        if end is not None:
            ax.axvline(end, color="#222222", linewidth=1.2, linestyle="--", zorder=3)
    if label_ax is None:
        return

    def label(x: float, text: str) -> None:
        label_ax.annotate(text, xy=(x, 1), xycoords=("data", "axes fraction"), xytext=(3, -3),
                          textcoords="offset points", ha="left", va="top", fontsize=8)

    if end is None:
        label(0, "rollout starts (it never ended)")
    elif end / max(x1 - x0, 1e-9) < 0.14:  # too close together for two labels
        label(end, f"rollout: 0 to {end:.1f} s")
    else:
        label(0, "rollout starts")
        label(end, f"rollout ends ({end:.1f} s)")


def _int_axis(ax: Any, top: int) -> None:
    ax.set_ylim(0, top + 0.9)  # headroom for the rollout labels
    step = max(1, math.ceil((top + 1) / 6))
    ax.set_yticks(range(0, top + 1, step))


def _max_count(traces: Sequence[Trace]) -> int:
    return max([1] + [max(s.healthy + s.initial + s.unhealthy + s.draining, s.old_serving + s.new_serving)
                      for tr in traces for s in tr.samples])


def _legend_right(ax: Any) -> None:
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False, borderaxespad=0)


def timeline_png(trace: Trace, path: Path, title: str, *, x_end: float | None = None) -> Path:
    """One strategy: targets by state, pods accepting connections by version, failed requests per second."""
    x0, x1 = -LEAD_SECONDS, x_end if x_end is not None else trace.end
    fig = Figure(figsize=(12.5, 7.8), dpi=DPI, layout="constrained")
    ax_t, ax_p, ax_f = fig.subplots(3, 1, sharex=True, gridspec_kw={"height_ratios": [2.2, 2.2, 1.6]})
    top = _max_count([trace])

    states = ("healthy", "initial", "unhealthy", "draining")
    xs, ys = _series(trace, states, x0, x1)
    _stacked(ax_t, xs, ys, [TARGET_COLOURS[s] for s in states], [f"{s} targets" for s in states])
    ax_t.set_ylabel("targets in the\ntarget group", fontsize=9)
    ax_t.set_title(trace.target_groups, loc="right", fontsize=8, color="#555555")
    _legend_right(ax_t)
    _int_axis(ax_t, top)

    xs, ys = _series(trace, ("old_serving", "new_serving"), x0, x1)
    _stacked(ax_p, xs, ys, [OLD_COLOUR, NEW_COLOUR],
             [f"old pods ({trace.old_version})", f"new pods ({trace.new_version})"])
    for i, t in enumerate(trace.new_ready):
        ax_p.axvline(t, color="#333333", linewidth=0.9, linestyle=":", zorder=4,
                     label="a new pod turns Ready:\nan old pod may go" if i == 0 else None)
    ax_p.set_ylabel("pods accepting\nconnections", fontsize=9)
    _legend_right(ax_p)
    _int_axis(ax_p, top)

    if _draw_failures(ax_f, trace, x0, x1, None):
        _legend_right(ax_f)
    ax_f.set_xlabel("seconds since the rollout started")
    ax_f.set_xlim(x0, x1)
    _mark_rollout((ax_t, ax_p, ax_f), trace, x0, x1, label_ax=ax_t)
    fig.suptitle(f"{title}\n{trace.strategy}: {trace.summary}", fontsize=11)
    return _save(fig, path)


def comparison_png(traces: Sequence[Trace], path: Path, title: str) -> Path:
    """The strategies stacked on one shared time axis and one failure scale: the picture the README shows."""
    x0 = -LEAD_SECONDS
    x1 = max(tr.end for tr in traces)
    rows: list[float] = []
    for i in range(len(traces)):
        rows += [2.0, 1.0] + ([0.5] if i < len(traces) - 1 else [])
    fig = Figure(figsize=(12, 3.4 * len(traces) + 1.2), dpi=DPI, layout="constrained")
    gs = fig.add_gridspec(len(rows), 1, height_ratios=rows)
    top = _max_count(traces)
    fail_max = max([1] + [max(_sum_bins(tr, x0, x1)) for tr in traces])
    first: Any = None
    axes: list[Any] = []
    causes: list[str] = []
    for i, tr in enumerate(traces):
        r = 3 * i
        ax_p = fig.add_subplot(gs[r], sharex=first)
        first = first or ax_p
        ax_f = fig.add_subplot(gs[r + 1], sharex=first)
        axes += [ax_p, ax_f]
        xs, ys = _series(tr, ("old_serving", "new_serving"), x0, x1)
        _stacked(ax_p, xs, ys, [OLD_COLOUR, NEW_COLOUR], ["", ""])
        hx, hy = _series(tr, ("healthy",), x0, x1)
        ax_p.step(hx, hy[0], where="post", color="#111111", linewidth=2.0)
        _int_axis(ax_p, top)
        ax_p.set_ylabel("pods /\ntargets", fontsize=9)
        ax_p.set_title(f"{tr.strategy}: {tr.summary}", loc="left", fontsize=10, fontweight="bold")
        ax_p.tick_params(labelbottom=False)
        causes += [c for c in _draw_failures(ax_f, tr, x0, x1, fail_max) if c not in causes]
        if i < len(traces) - 1:
            ax_f.tick_params(labelbottom=False)
        _mark_rollout((ax_p, ax_f), tr, x0, x1, label_ax=ax_p)
    axes[-1].set_xlabel("seconds since the rollout started (the same clients and seed for every strategy)")
    axes[-1].set_xlim(x0, x1)
    t0 = traces[0]
    handles: list[Any] = [
        Patch(color=OLD_COLOUR, label=f"old pods accepting connections ({t0.old_version})"),
        Patch(color=NEW_COLOUR, label=f"new pods accepting connections ({t0.new_version})"),
        Line2D([], [], color="#111111", linewidth=2.0, label="healthy targets in the ALB target group"),
        Patch(color=ROLLOUT_SHADE, ec="#999999", label="rollout in progress"),
    ] + [Patch(color=CAUSE_COLOURS.get(c, "#7f7f7f"), label=f"failed: {c}") for c in causes]
    fig.legend(handles=handles, loc="outside lower center", ncols=3, fontsize=8.5, frameon=False)
    fig.suptitle(title, fontsize=12)
    return _save(fig, path)


def _sum_bins(trace: Trace, x0: float, x1: float) -> list[int]:
    edges, counts = _failure_bins(trace, x0, x1)
    return [sum(c[i] for c in counts.values()) for i in range(len(edges))] or [0]


def _save(fig: Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI, facecolor="white")
    return path


# =========================================================================================================
# The state machine graph
# =========================================================================================================
START = "__start__"
BOX_W, BOX_H = 2.25, 0.56  # inches: the figure is drawn 1 data unit = 1 inch
START_W, START_H = 0.9, 0.34
ROW_GAP = 0.39  # between the boxes of two rows (the room the labels of the arrows leaving a row get)
GAP = 0.4  # between neighbours in a row (a box, or a point a long arrow passes through)
Point = tuple[float, float]


@dataclass
class GNode:
    key: str
    label: str
    kind: str  # the ASL Type, or "Start"
    caption: str = ""
    layer: int = 0  # the row, 0 at the top
    x: float = 0.0  # the centre (y grows upwards: the rows go down)
    y: float = 0.0

    @property
    def w(self) -> float:
        return START_W if self.kind == "Start" else BOX_W

    @property
    def h(self) -> float:
        return START_H if self.kind == "Start" else BOX_H


@dataclass
class GEdge:
    src: str
    dst: str
    label: str
    kind: str  # next | choice | default | catch
    back: bool = False  # drawn upwards (it closes a loop)
    route: list[Point] = field(default_factory=list)  # top to bottom: the two box centres, between them the
    # points where the arrow crosses the rows it spans (none for an arrow between adjacent rows)


@dataclass
class GraphLayout:
    nodes: dict[str, GNode]
    edges: list[GEdge]
    layers: list[list[str]]  # the rows, top down, each left to right

    def real(self) -> list[GNode]:
        return list(self.nodes.values())


def _caption(state: dict[str, Any]) -> str:
    """What the console prints under a state's name."""
    kind = state["Type"]
    if kind == "Task":
        res = str(state.get("Resource", ""))
        if ":lambda:" in res and ":function:" in res or res.startswith("arn:aws:states:::lambda:invoke"):
            return "Lambda: Invoke" + (" (wait for callback)" if res.endswith(".waitForTaskToken") else "")
        return "Task"
    return {"Succeed": "Success state"}.get(kind, f"{kind} state")


_OPS = {"Equals": "=", "GreaterThan": ">", "GreaterThanEquals": ">=", "LessThan": "<", "LessThanEquals": "<="}


def rule_label(rule: dict[str, Any], index: int) -> str:
    """A Choice rule as a short label: `gate.status = PASSED`, `more_steps`, an Or of equalities on one variable
    as `drain.status = PASSED or DRAINING`, a presence test guarding a comparison of the same variable as the
    comparison (`preflight = WAITING_FOR_DESCRIBE_TURN`), or `Rule #n` for other compound ones."""
    parts = rule.get("And")
    if parts:
        # `x present and x = V` reads `x = V`: the presence test only keeps the comparison from failing
        labels = [rule_label(r, index) for r in parts]
        compared = {label.split(" ", 1)[0] for label in labels if not label.endswith(" present")}
        kept = [label for label in labels if not (label.endswith(" present") and label.split(" ", 1)[0] in compared)]
        if len(kept) == 1 and not kept[0].startswith("Rule #"):
            return kept[0]
        return f"Rule #{index}"
    alternatives = rule.get("Or")
    if alternatives:
        labels = [rule_label(r, index) for r in alternatives]
        heads = {label.rsplit(" = ", 1)[0] for label in labels if " = " in label}
        if len(heads) == 1 and all(" = " in label for label in labels):
            return f"{heads.pop()} = " + " or ".join(label.rsplit(" = ", 1)[1] for label in labels)
        return f"Rule #{index}"
    var = str(rule.get("Variable", "")).removeprefix("$.")
    for key, value in rule.items():
        if key in ("Variable", "Next", "Comment"):
            continue
        if key == "BooleanEquals" and var:
            return var if value else f"not {var}"
        if key == "IsPresent" and var:
            return f"{var} present" if value else f"no {var}"
        for suffix, op in _OPS.items():
            if key.endswith(suffix) and not key.endswith("Path") and var:
                return f"{var} {op} {value}"
    return f"Rule #{index}"


def state_machine_graph(definition: dict[str, Any]) -> tuple[dict[str, GNode], list[GEdge]]:
    """The definition's states and transitions (nested Parallel/Map branches are drawn as their one state)."""
    states: dict[str, dict[str, Any]] = definition["States"]
    nodes = {START: GNode(START, "Start", "Start")}
    for name, st in states.items():
        nodes[name] = GNode(name, name, st["Type"], _caption(st))
    edges: list[GEdge] = [GEdge(START, definition["StartAt"], "", "next")]
    seen: dict[tuple[str, str], GEdge] = {}

    def add(src: str, dst: str, label: str, kind: str) -> None:
        if dst not in states:
            raise ValueError(f"state {src!r} goes to {dst!r}, which the definition does not have")
        if (src, dst) in seen:  # one arrow per pair: keep the first label, a catch after a rule adds nothing
            return
        seen[(src, dst)] = e = GEdge(src, dst, label, kind)
        edges.append(e)

    for name, st in states.items():
        if "Next" in st:
            add(name, st["Next"], "", "next")
        for i, rule in enumerate(st.get("Choices", []), 1):
            add(name, rule["Next"], rule_label(rule, i), "choice")
        if "Default" in st:
            add(name, st["Default"], "Default", "default")
        for catcher in st.get("Catch", []):
            add(name, catcher["Next"], "Catch", "catch")
    return nodes, edges


class _Route:
    """An edge's view, which grandalf's draw_edges hands the points the edge passes (its source's centre first)."""

    def setpath(self, points: list[Point]) -> None:
        self.points = points


def _components(nodes: dict[str, GNode], edges: list[GEdge]) -> list[list[str]]:
    """The connected parts of the graph, Start's first, each in the definition's order (grandalf lays out one
    connected graph at a time; a valid definition is one part, as every state is reachable from StartAt)."""
    parent = {n: n for n in nodes}

    def root(n: str) -> str:
        while parent[n] != n:
            n = parent[n]
        return n

    for e in edges:
        parent[root(e.src)] = root(e.dst)
    parts: dict[str, list[str]] = defaultdict(list)
    for n in nodes:
        parts[root(n)].append(n)
    return list(parts.values())


def layout_state_machine(definition: dict[str, Any]) -> GraphLayout:
    """The graph laid out by grandalf's Sugiyama layout (docs/facts.md, "grandalf's Sugiyama layout"): the
    loop-closing edges are those a depth-first search from Start, taking the transitions in the order the
    definition lists them, finds going back to a state still on its path; rows by longest path; a long arrow
    passes a point in every row it spans; rows ordered by barycentre sweeps; x by Brandes and Köpf."""
    nodes, edges = state_machine_graph(definition)
    rows: dict[int, list[tuple[float, str]]] = defaultdict(list)
    left = 0.0  # where the next part goes: to the right of the one before
    for keys in _components(nodes, edges):
        vertex = {k: Vertex(k) for k in keys}
        for k, v in vertex.items():
            v.view = VertexViewer(nodes[k].w, nodes[k].h)
        # Edges in the definition's order (the search follows it); a self-loop stays out (drawn beside its box).
        pairs = [(e, Edge(vertex[e.src], vertex[e.dst])) for e in edges if e.src in vertex and e.src != e.dst]
        for _, ge in pairs:
            ge.view = _Route()
        sug = SugiyamaLayout(graph_core(list(vertex.values()), [ge for _, ge in pairs]))
        sug.xspace, sug.yspace = GAP, ROW_GAP
        sug.dw, sug.dh = 0.0, 0.0  # the point a long arrow passes in a row takes no room of its own
        sug.init_all(roots=[vertex[START]] if START in vertex else None)
        sug.draw()
        xs = [v.view.xy[0] + s * v.view.w / 2 for v in sug.grx for s in (-1, 1)]  # dummy points included
        shift = left - min(xs)
        left += max(xs) - min(xs) + 2 * GAP
        for k, v in vertex.items():  # grandalf's y grows downwards
            n, (x, y) = nodes[k], v.view.xy
            n.layer, n.x, n.y = sug.grx[v].rank, x + shift, -y
            rows[n.layer].append((n.x, k))
        for e, ge in pairs:
            e.back = ge in sug.alt_e
            e.route = [(x + shift, -y) for x, y in ge.view.points]  # from the transition's source to its target
            if e.back:
                e.route.reverse()
    for e in edges:
        if e.src == e.dst:
            e.route = [(nodes[e.src].x, nodes[e.src].y)]
    return GraphLayout(nodes, edges, [[k for _, k in sorted(rows[r])] for r in sorted(rows)])


# --- drawing ----------------------------------------------------------------------------------------------
STYLE = {  # fill, border: near the console's palette (white tasks; flow states tinted)
    "Task": ("#ffffff", "#545b64"),
    "Choice": ("#fff7e0", "#8a6d00"),
    "Wait": ("#eaf2ff", "#3f6fb5"),
    "Pass": ("#f3f3f3", "#6b6b6b"),
    "Succeed": ("#e6f4ea", "#1d8102"),
    "Fail": ("#fdecea", "#d13212"),
    "Parallel": ("#ffffff", "#545b64"),
    "Map": ("#ffffff", "#545b64"),
}
VISITED_FILL, VISITED_EDGE = "#d7f0dc", "#1d8102"
FAILED_FILL, FAILED_EDGE = "#fbd9d3", "#d13212"  # the console marks the Fail state an execution ended in red


def _wrap(label: str) -> str:
    if label.startswith("Rollback: ") and len(label) > 22:
        return "Rollback:\n" + label.removeprefix("Rollback: ")
    return "\n".join(textwrap.wrap(label, 24)) or label


def _straighten(points: list[tuple[float, float]], boxes: list[GNode]) -> list[int]:
    """Indices of the route points to keep (the ends always): from each kept point, jump to the farthest point a
    straight line reaches without crossing a box in the rows between, so a long edge bends only where its route
    must go around a state."""
    def clear(p: tuple[float, float], q: tuple[float, float]) -> bool:
        lo, hi = sorted((p[1], q[1]))
        for n in boxes:
            if lo + 1e-6 < n.y < hi - 1e-6:
                x = p[0] + (q[0] - p[0]) * (n.y - p[1]) / (q[1] - p[1])
                if abs(x - n.x) < n.w / 2 + 0.22:
                    return False
        return True

    keep, i = [0], 0
    while i < len(points) - 1:
        j = len(points) - 1
        while j > i + 1 and not clear(points[i], points[j]):
            j -= 1
        keep.append(j)
        i = j
    return keep


def _controls(points: list[Point], tangents: list[Point | None]) -> list[tuple[Point, Point, Point, Point]]:
    """Cubic segments through the points: the given tangents where set (ports); elsewhere (a route point in the
    gap between two states of a row) vertical, so the curve crosses the row in that gap and not through a box."""
    tans: list[Point] = []
    for i, t in enumerate(tangents):
        if t is None:
            t = (0.0, -1.0 if points[min(len(points) - 1, i + 1)][1] < points[max(0, i - 1)][1] else 1.0)
        tans.append(t)
    out = []
    for (p0, t0), (p1, t1) in zip(zip(points, tans), zip(points[1:], tans[1:])):
        d = min(math.hypot(p1[0] - p0[0], p1[1] - p0[1]) * 0.3, 1.2)
        if t0[0] == t1[0] == 0.0:  # vertical at both ends: a longer handle would overshoot the row and bend back
            d = min(d, abs(p1[1] - p0[1]) / 2)
        out.append((p0, (p0[0] + t0[0] * d, p0[1] + t0[1] * d), (p1[0] - t1[0] * d, p1[1] - t1[1] * d), p1))
    return out


def _bezier(points: list[Point], tangents: list[Point | None]) -> MplPath:
    segs = _controls(points, tangents)
    verts, codes = [points[0]], [MplPath.MOVETO]
    for _, c1, c2, p1 in segs:
        verts += [c1, c2, p1]
        codes += [MplPath.CURVE4] * 3
    return MplPath(verts, codes)


def _crossing(points: list[Point], tangents: list[Point | None], boxes: list[GNode], ends: set[str]) -> float | None:
    """The y where the drawn curve first runs through a state's box (other than its own two), or None."""
    for p0, c1, c2, p1 in _controls(points, tangents):
        for i in range(1, 24):
            t = i / 24
            u = 1 - t
            x = u**3 * p0[0] + 3 * u * u * t * c1[0] + 3 * u * t * t * c2[0] + t**3 * p1[0]
            y = u**3 * p0[1] + 3 * u * u * t * c1[1] + 3 * u * t * t * c2[1] + t**3 * p1[1]
            for n in boxes:
                if n.key not in ends and abs(x - n.x) < n.w / 2 + 0.05 and abs(y - n.y) < n.h / 2 + 0.05:
                    return y
    return None


Geometry = tuple[list[Point], list[Point | None]]


def _edge_geometry(lay: GraphLayout) -> dict[int, Geometry]:
    """Points and tangents of every edge, in the direction of the transition. Edges leave a box at its bottom
    and enter the next one at its top (a loop-back edge leaves the lower box's top and enters the upper box's
    bottom, like the console's), ports spread along the box edge in the order the edges go."""
    nodes = lay.nodes
    down = (0.0, -1.0)
    bottom: dict[str, list[tuple[float, int]]] = defaultdict(list)  # ports on a box's lower edge
    top: dict[str, list[tuple[float, int]]] = defaultdict(list)
    for k, e in enumerate(lay.edges):
        r = e.route
        if e.src == e.dst or (e.back and len(r) == 2):
            continue
        high, low = (e.dst, e.src) if e.back else (e.src, e.dst)
        bottom[high].append((r[1][0], k))
        top[low].append((r[-2][0], k))

    def spread(groups: dict[str, list[tuple[float, int]]]) -> dict[int, float]:
        out: dict[int, float] = {}
        for n, lst in groups.items():
            lst.sort()
            width = nodes[n].w * 0.64
            for i, (_, k) in enumerate(lst):
                out[k] = 0.0 if len(lst) == 1 else -width / 2 + width * i / (len(lst) - 1)
        return out

    low_dx, high_dx = spread(bottom), spread(top)
    boxes = lay.real()
    geo: dict[int, Geometry] = {}
    for k, e in enumerate(lay.edges):
        a, b = (nodes[e.dst], nodes[e.src]) if e.back else (nodes[e.src], nodes[e.dst])  # top and bottom
        via = e.route
        if e.src == e.dst:  # a self-loop: out of the right side and back in
            r = a.x + a.w / 2
            geo[k] = ([(r, a.y - 0.1), (r + 0.5, a.y), (r, a.y + 0.1)], [(1.0, 0.0), (0.0, 1.0), (-1.0, 0.0)])
            continue
        if e.back and len(via) == 2:  # a loop between adjacent rows: out of the lower box's side, bulging right
            right = max(a.x + a.w / 2, b.x + b.w / 2) + 0.45
            geo[k] = ([(b.x + b.w / 2, b.y), (right, (a.y + b.y) / 2), (a.x + a.w / 2, a.y)],
                      [(1.0, 0.0), (0.0, 1.0), (-1.0, 0.0)])
            continue
        pts = [(a.x + low_dx[k], a.y - a.h / 2)] + via[1:-1] + [(b.x + high_dx[k], b.y + b.h / 2)]
        def route(keep: list[int]) -> tuple[list[Point], list[Point | None]]:
            # a route point sits in a gap of its row: cross the row's band straight down, bend only between rows
            out: list[Point] = []
            for i in keep:
                x, y = pts[i]
                out += [(x, y)] if i in (0, len(pts) - 1) else [(x, y + BOX_H / 2), (x, y - BOX_H / 2)]
            return out, [down] * len(out)

        keep = _straighten(pts, boxes)
        while True:  # put back route points where the drawn curve would run through a box
            drawn, tangents = route(keep)
            hit = _crossing(drawn, tangents, boxes, {e.src, e.dst})
            dropped = [i for i in range(len(pts)) if i not in keep]
            if hit is None or not dropped:
                break
            keep = sorted(keep + [min(dropped, key=lambda i: abs(pts[i][1] - hit))])
        if e.back:
            drawn.reverse()
            tangents = [(0.0, 1.0)] * len(drawn)
        geo[k] = (drawn, tangents)
    return geo


def state_machine_png(definition: dict[str, Any], path: Path, title: str, visited: Sequence[str] = ()) -> Path:
    """The graph top-down, states the given execution entered in green, the transitions it took thicker."""
    lay = layout_state_machine(definition)
    nodes = lay.nodes
    real = lay.real()
    xs = [n.x - n.w / 2 for n in real] + [n.x + n.w / 2 + 0.6 for n in real]
    xs += [x for e in lay.edges for x, _ in e.route]  # where long arrows cross the rows
    x_min, x_max = min(xs) - 0.4, max(xs) + 0.4
    y_top, y_bottom = max(n.y for n in real) + 1.7, min(n.y for n in real) - 0.6
    width, height = x_max - x_min, y_top - y_bottom
    fig = Figure(figsize=(width, height), dpi=DPI)
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_xlim(x_min, x_max)
    ax.set_ylim(y_bottom, y_top)
    ax.set_axis_off()

    taken = {(START, visited[0])} if visited else set()
    taken |= set(zip(visited, visited[1:]))
    entered = set(visited)
    geo = _edge_geometry(lay)
    for k, e in enumerate(lay.edges):
        pts, tangents = geo[k]
        on_path = (e.src, e.dst) in taken
        colour = VISITED_EDGE if on_path else "#7d8998"
        arrow = FancyArrowPatch(path=_bezier(pts, tangents), arrowstyle="-|>", mutation_scale=11,
                                linewidth=2.0 if on_path else 1.0, color=colour, zorder=2 if on_path else 1,
                                linestyle=(0, (4, 3)) if e.kind == "catch" else "-", shrinkA=0, shrinkB=0)
        ax.add_patch(arrow)
        if e.label:
            p0, p1 = pts[0], pts[1]
            drop = min(0.26, abs(p1[1] - p0[1]) * 0.5)
            frac = drop / max(abs(p1[1] - p0[1]), 1e-6)
            lx, ly = p0[0] + (p1[0] - p0[0]) * frac, p0[1] + (drop if e.back else -drop)
            ha = "center"
            ax.text(lx, ly, e.label, fontsize=6.5, ha=ha, va="center", color="#3b4650", zorder=5,
                    bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": "none", "alpha": 0.9})

    for n in real:
        if n.kind == "Start":
            box = FancyBboxPatch((n.x - n.w / 2, n.y - n.h / 2), n.w, n.h, boxstyle="round,pad=0,rounding_size=0.17",
                                 fc="#232f3e", ec="#232f3e", zorder=3)
            ax.add_patch(box)
            ax.text(n.x, n.y, "Start", color="white", fontsize=8, ha="center", va="center", zorder=4)
            continue
        fill, edge = STYLE.get(n.kind, ("#ffffff", "#545b64"))
        lw = 1.2
        if visited:
            fill, lw = (VISITED_FILL, 2.0) if n.key in entered else ("#ffffff", 1.0)
            edge = VISITED_EDGE if n.key in entered else STYLE.get(n.kind, ("", "#545b64"))[1]
            if n.key == visited[-1] and n.kind == "Fail":
                fill, edge = FAILED_FILL, FAILED_EDGE
        box = FancyBboxPatch((n.x - n.w / 2, n.y - n.h / 2), n.w, n.h, boxstyle="round,pad=0,rounding_size=0.07",
                             fc=fill, ec=edge, linewidth=lw, zorder=3)
        ax.add_patch(box)
        label = _wrap(n.label)
        lines = label.count("\n") + 1
        ax.text(n.x, n.y + (0.07 if lines == 1 else 0.1), label, fontsize=8, ha="center", va="center",
                fontweight="bold", color="#16191f", zorder=4, linespacing=1.0)
        ax.text(n.x, n.y - n.h / 2 + 0.085, n.caption, fontsize=6, ha="center", va="center", color="#5f6b7a",
                zorder=4)

    handles = [Patch(fc=STYLE[k][0], ec=STYLE[k][1], label=f"{k}") for k in ("Task", "Choice", "Wait", "Pass",
                                                                               "Succeed", "Fail")]
    handles += [Line2D([], [], color="#7d8998", linestyle=(0, (4, 3)), label="Catch (error)")]
    if visited:
        handles = [Patch(fc=VISITED_FILL, ec=VISITED_EDGE, linewidth=2, label="entered by the demo's execution"),
                   Line2D([], [], color=VISITED_EDGE, linewidth=2, label="transition it took"),
                   Patch(fc="#ffffff", ec="#545b64", label="not entered")] + handles[-1:]
        if nodes[visited[-1]].kind == "Fail":
            handles.insert(2, Patch(fc=FAILED_FILL, ec=FAILED_EDGE, linewidth=2, label="the Fail state it ended in"))
    ax.text(x_min + 0.25, y_top - 0.2, title, fontsize=11, ha="left", va="top", fontweight="bold", color="#16191f")
    ax.legend(handles=handles, loc="upper left", fontsize=8, frameon=False, ncols=4,
              bbox_to_anchor=(0.25 / width, (height - 0.75) / height), borderaxespad=0)
    return _save(fig, path)
