"""Scripted push-T expert: pick a contact by its induced twist, go around the T, push, refine.

Frictionless quasi-static pushing with viscous damping: a push of depth u along the inward normal
m at block-frame point r moves the block by the twist u (m, (r x m)/I) / (1 + (r x m)^2 / I)
(I = moment of inertia per unit mass), so in pose coordinates (x, y, L theta) with L = sqrt(I) the
twist direction is (m, w) / sqrt(1 + w^2), w = (r x m) / L (Mason 1986; Lynch & Mason 1996). The
expert ranks outline points by how fast pushing there reduces the pose error (gain per step,
travel included), travels around the T with `clearance`, and pushes with a one-step oracle on the
simulator (push, then stop) that picks the push depth minimising the settled pose error.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from envs.pusht import AGENT_RADIUS, BLOCK_INERTIA, T_RECTS, WALL_IN, WALL_OUT, PushTEnv, wrap_angle

__all__ = ["PushTExpert", "PushTExpertConfig"]

# The T's outline (counter-clockwise, block frame, mm) and its convex hull.
T_OUTLINE = np.array([[-60, 15], [-15, 15], [-15, -75], [15, -75], [15, 15], [60, 15], [60, 45], [-60, 45]], float)
T_HULL = np.array([[-60, 45], [-60, 15], [-15, -75], [15, -75], [60, 15], [60, 45]], float)


@dataclass(frozen=True)
class PushTExpertConfig:
    """Constants of the scripted push-T expert (lengths in mm, durations in env steps)."""

    clearance: float = 40.0  # gap between pusher edge and T while travelling around it
    standoff: float = 3.0  # gap at which travel ends and the push begins
    contact_spacing: float = 5.0  # spacing of candidate contact points on the T outline
    length_scale: float = float(np.sqrt(BLOCK_INERTIA))  # mm per radian in the pose error (radius of gyration)
    lookahead: float = 90.0  # distance of the travel target ahead of the pusher (~37 mm/step)
    waypoint_tol: float = 15.0  # a travel waypoint counts as reached within this distance
    arrive_tol: float = 3.0  # the standoff point counts as reached within this distance
    travel_speed: float = 30.0  # mm per step, for travel-cost estimates
    push_speed: float = 15.0  # mm per step, for push-cost estimates
    depth_scales: tuple[float, ...] = (0.35, 0.7, 1.4, 2.8)  # oracle push depths, times the analytic depth
    max_depth: float = 60.0  # deepest oracle push target (mm)
    ranked_contacts: int = 4  # contacts (best analytic gain) whose travel path is planned
    min_gain: float = 0.2  # a push continues while the oracle predicts this much error reduction (mm)
    max_travel_steps: int = 40  # replan when travel takes longer
    replan_shift: float = 3.0  # replan when the block moves this much (mm, or mm of L theta) during travel
    segment_steps: tuple[int, int] = (3, 8)  # length range of random segments
    random_smoothing: float = 0.7  # AR(1) coefficient of random-segment actions

    def __post_init__(self):
        if self.clearance < 0 or self.standoff <= 0 or self.contact_spacing <= 0:
            raise ValueError("clearance must be >= 0, standoff and contact_spacing > 0")
        if not 1 <= self.segment_steps[0] <= self.segment_steps[1]:
            raise ValueError(f"segment_steps must be 1 <= lo <= hi, got {self.segment_steps}")


def dist_to_t(local: np.ndarray) -> np.ndarray:
    """Distance (mm) of block-frame points [M, 2] to the T (0 inside): [M]."""
    d = np.full(local.shape[:-1], np.inf)
    for x, y, hw, hh in T_RECTS:
        dx = np.maximum(np.abs(local[..., 0] - x) - hw, 0.0)
        dy = np.maximum(np.abs(local[..., 1] - y) - hh, 0.0)
        d = np.minimum(d, np.hypot(dx, dy))
    return d


def _rot(theta: float) -> np.ndarray:
    c, s = np.cos(theta), np.sin(theta)
    return np.array([[c, -s], [s, c]])


def _outward(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Outward unit normal of the counter-clockwise edge a -> b."""
    d = (b - a) / np.linalg.norm(b - a)
    return np.array([d[1], -d[0]])


def _segment_min_dist(a: np.ndarray, bs: np.ndarray, samples: int = 48) -> np.ndarray:
    """Smallest distance to the T along the block-frame segments a -> bs[k]: [K]."""
    t = np.linspace(0.0, 1.0, samples)[None, :, None]
    pts = a[None, None, :] + t * (bs[:, None, :] - a[None, None, :])  # [K, S, 2]
    return dist_to_t(pts).min(axis=1)


def _contacts(cfg: PushTExpertConfig):
    """Feasible contacts on the outline: points r, inward push directions m, exit points [C, 2]."""
    reach = AGENT_RADIUS + cfg.clearance
    rs, ms, exits = [], [], []
    for a, b in zip(T_OUTLINE, np.roll(T_OUTLINE, -1, axis=0)):
        n, length = _outward(a, b), np.linalg.norm(b - a)
        for s in np.arange(cfg.contact_spacing / 2, length, cfg.contact_spacing):
            r = a + (b - a) * s / length
            ray = r + n * (AGENT_RADIUS + cfg.standoff + np.arange(0.0, 200.0, 2.0))[:, None]
            d = dist_to_t(ray)
            clear = np.nonzero(d >= reach)[0]
            if d[0] < AGENT_RADIUS + cfg.standoff - 0.5 or len(clear) == 0 or d[: clear[0]].min() < AGENT_RADIUS + 1:
                continue  # the pusher does not fit there, or cannot get there along the normal
            rs.append(r), ms.append(-n), exits.append(ray[clear[0]])
    return np.array(rs), np.array(ms), np.array(exits)


def _ring(clearance: float) -> np.ndarray:
    """Travel waypoints around the T's hull, `clearance` away from it (block frame): [18, 2]."""
    radius = (AGENT_RADIUS + clearance) / np.cos(np.pi / 8) + 1.0
    nodes = []
    for i, v in enumerate(T_HULL):
        n_in = _outward(T_HULL[i - 1], v)
        n_out = _outward(v, T_HULL[(i + 1) % len(T_HULL)])
        bis = (n_in + n_out) / np.linalg.norm(n_in + n_out)
        nodes += [v + radius * n_in, v + radius * bis, v + radius * n_out]
    return np.array(nodes)


class _Router:
    """Shortest block-frame path for the pusher to a contact's standoff point, around the T."""

    def __init__(self, cfg: PushTExpertConfig, clearance: float):
        self.margin = AGENT_RADIUS + clearance - 1.0
        self.ring = _ring(clearance)
        ring_dist = np.array([_segment_min_dist(a, self.ring) for a in self.ring])
        lengths = np.linalg.norm(self.ring[:, None] - self.ring[None], axis=-1)
        self.ring_w = np.where(ring_dist >= self.margin, lengths, np.inf)

    def plan(self, p: np.ndarray, exit_pt: np.ndarray, standoff: np.ndarray, ring_ok: np.ndarray):
        """Waypoints (block frame) from pusher p to `standoff`, or None; `ring_ok` masks usable nodes.

        Near the T the pusher slides straight to the standoff if that keeps its distance, or first
        backs off along the distance gradient; it then goes around the `clearance` ring.
        """
        d_p, d_s = float(dist_to_t(p)), float(dist_to_t(standoff))
        if d_p < d_s + 10.0 and _segment_min_dist(p, standoff[None])[0] >= min(d_p, d_s) - 1.0:
            return standoff[None]
        head = np.zeros((0, 2))
        if d_p < self.margin:
            p = _escape(p, self.margin + 1.0)
            head, d_p = p[None], float(dist_to_t(p))
        nodes = np.vstack([p, self.ring, exit_pt, standoff])  # 0 = p, 1..R = ring, R+1 = exit, R+2 = standoff
        k = len(nodes)
        w = np.full((k, k), np.inf)
        w[1:-2, 1:-2] = np.where(ring_ok[:, None] & ring_ok[None], self.ring_w, np.inf)
        ok_p = _segment_min_dist(p, nodes[1:-1]) >= min(self.margin, d_p - 1.0)
        w[0, 1:-1] = np.where(ok_p & np.r_[ring_ok, True], np.linalg.norm(nodes[1:-1] - p, axis=1), np.inf)
        ok_exit = (_segment_min_dist(exit_pt, self.ring) >= self.margin) & ring_ok
        w[1:-2, -2] = np.where(ok_exit, np.linalg.norm(self.ring - exit_pt, axis=1), np.inf)
        w[-2, -1] = np.linalg.norm(standoff - exit_pt)
        path = _dijkstra(w, nodes)
        return None if path is None else np.vstack([head, path])


def _escape(p: np.ndarray, distance: float) -> np.ndarray:
    """The point `distance` from the T straight up the distance gradient from p (block frame)."""
    h = np.array([[1.0, 0.0], [0.0, 1.0]])
    grad = (dist_to_t(p + h) - dist_to_t(p - h)) / 2.0
    norm = np.linalg.norm(grad)
    direction = grad / norm if norm > 1e-6 else p / max(np.linalg.norm(p), 1e-6)
    return p + direction * max(distance - float(dist_to_t(p)), 0.0)


def _dijkstra(w: np.ndarray, nodes: np.ndarray):
    """Shortest path from node 0 to the last node on the directed weights w; waypoints or None."""
    k = len(w)
    dist, prev, done = np.full(k, np.inf), np.full(k, -1), np.zeros(k, bool)
    dist[0] = 0.0
    while True:
        u = int(np.argmin(np.where(done, np.inf, dist)))
        if done[u] or not np.isfinite(dist[u]):
            return None
        if u == k - 1:
            break
        done[u] = True
        better = dist[u] + w[u] < dist
        dist[better], prev[better] = dist[u] + w[u][better], u
    path = [k - 1]
    while path[-1] != 0:
        path.append(int(prev[path[-1]]))
    return nodes[path[::-1][1:]]
def _pd_step(cfg) -> tuple[np.ndarray, np.ndarray]:
    """One env step of the pusher's PD tracking, per axis: (p, v)' = A (p, v) + B target."""
    dt, kp, kv = cfg.timestep, cfg.kp, cfg.kv
    sub_a = np.array([[1 - kp * dt * dt, dt * (1 - kv * dt)], [-kp * dt, 1 - kv * dt]])  # semi-implicit Euler
    sub_b = np.array([kp * dt * dt, kp * dt])
    a, b = np.eye(2), np.zeros(2)
    for _ in range(cfg.substeps):
        a, b = sub_a @ a, sub_a @ b + sub_b
    return a, b


def _carrot(p: np.ndarray, waypoints: np.ndarray, reach: float) -> np.ndarray:
    """The point `reach` mm along the polyline p -> waypoints (its end if shorter)."""
    for w in waypoints:
        d = float(np.linalg.norm(w - p))
        if d >= reach:
            return p + (w - p) * reach / d
        reach, p = reach - d, w
    return p


def _passed(p: np.ndarray, world: np.ndarray, tol: float = 30.0) -> bool:
    """Whether the pusher has gone past ring waypoint world[0] (not the exit) and is on the next leg."""
    if len(world) < 3:
        return False
    a, b = world[0], world[1]
    t = np.dot(p - a, b - a) / max(np.dot(b - a, b - a), 1e-9)
    return 0.0 < t < 1.0 and np.linalg.norm(a + t * (b - a) - p) < tol


class PushTExpert:
    """Scripted push-T expert with target noise and random segments (for data collection).

    Args:
        env: the `PushTEnv` to act in (relative actions); the expert reads its state and goal.
        noise: standard deviation (mm) of gaussian noise on the pusher target; 0 for the clean expert.
        random_frac: long-run fraction of steps spent in random smooth segments.
        seed: seed of the expert's noise.
        config: the remaining constants.
    """

    def __init__(self, env: PushTEnv, noise: float = 25.0, random_frac: float = 0.25, seed: int = 0,
                 config: PushTExpertConfig = PushTExpertConfig()):
        if noise < 0 or not 0 <= random_frac < 1:
            raise ValueError(f"need noise >= 0 and 0 <= random_frac < 1, got {noise}, {random_frac}")
        if not getattr(env.config, "relative_actions", False):
            raise ValueError("PushTExpert drives relative actions (PushTConfig.relative_actions=True)")
        self.env, self.noise, self.random_frac, self.seed, self.cfg = env, noise, random_frac, seed, config
        self.scale = env.config.action_scale
        self.contact_r, self.contact_m, self.contact_exit = _contacts(config)
        r, m = self.contact_r, self.contact_m
        w = (r[:, 0] * m[:, 1] - r[:, 1] * m[:, 0]) / config.length_scale  # (r x m) / L
        self.twist = np.c_[self.contact_m, w] / np.sqrt(1.0 + w**2)[:, None]  # unit twist per contact [C, 3]
        self.depth_per_gain = np.sqrt(1.0 + w**2)  # push depth per mm of error along the twist
        # Fallback rings with less clearance for blocks close to a wall.
        self.routers = [_Router(config, c) for c in (config.clearance, config.clearance / 2, 5.0)]
        a, b = _pd_step(env.config)
        self.a2 = a @ a  # pusher (position, velocity) after two steps without a target
        self.deadbeat_inv = np.linalg.inv(np.column_stack([a @ b, b]))  # targets that stop it in two steps
        self.reset()

    def reset(self, seed: int | None = None) -> None:
        """Forget the current plan; reseed the noise (with `seed`, else the constructor's seed)."""
        self.rng = np.random.default_rng(self.seed if seed is None else seed)
        self.contact, self.path, self.mode, self.travel_steps = None, None, "select", 0
        self.random_left, self.random_action, self.last_random = 0, np.zeros(2), False

    # ------------------------------------------------------------------ pose error
    def pose_error(self, state: np.ndarray) -> np.ndarray:
        """Goal minus block pose in block-frame (x, y, L theta) coordinates (mm): [3]."""
        pose, goal = state[2:5], self.env.goal_state[2:5]
        local = (goal[:2] - pose[:2]) @ _rot(pose[2])
        return np.r_[local, self.cfg.length_scale * wrap_angle(goal[2] - pose[2])]

    # ------------------------------------------------------------------ acting
    def act(self) -> np.ndarray:
        """The next action, float32 [2] in [-1, 1]."""
        self.last_random = self.random_left > 0
        if self.last_random:
            return self._random_step()
        p_start = self.random_frac / (np.mean(self.cfg.segment_steps) * (1 - self.random_frac) + self.random_frac)
        if self.random_frac > 0 and self.rng.random() < p_start:
            lo, hi = self.cfg.segment_steps
            self.random_left = int(self.rng.integers(lo, hi + 1))
            self.random_action = self.rng.uniform(-1.0, 1.0, 2)
            self.mode, self.last_random = "select", True
            return self._random_step()
        target = self._expert_target(self.env.get_state())
        target = target + self.rng.normal(0.0, self.noise, 2) if self.noise > 0 else target
        return self._to_action(target)

    def _random_step(self) -> np.ndarray:
        self.random_left -= 1
        k = self.cfg.random_smoothing
        self.random_action = np.clip(k * self.random_action + (1 - k) * self.rng.normal(0.0, 1.0, 2), -1, 1)
        return self.random_action.astype(np.float32)

    def _to_action(self, target: np.ndarray) -> np.ndarray:
        return np.clip((target - self.env.get_state()[:2]) / self.scale, -1.0, 1.0).astype(np.float32)

    def _expert_target(self, state: np.ndarray) -> np.ndarray:
        """World-frame pusher target for this step (travel, approach or push)."""
        self.mode = "select" if self.mode == "idle" else self.mode
        for _ in range(3):
            if self.mode == "select":
                self._select(state)
            if self.mode == "travel":
                target = self._travel(state)
                if target is not None:
                    return target
            if self.mode == "push":
                target = self._push(state)
                if target is not None:
                    return target
        return state[:2].copy()  # nothing worth doing: hold still

    def _select(self, state: np.ndarray) -> None:
        """Pick the contact with the best error reduction per step, travel included, and its path."""
        e = self.pose_error(state)
        err = np.linalg.norm(e)
        along = self.twist @ e  # error reduction available along each contact's twist
        gain = err - np.sqrt(np.maximum(err**2 - np.maximum(along, 0.0) ** 2, 0.0))
        pose = state[2:5]
        rot = _rot(pose[2])
        lo, hi = WALL_IN + AGENT_RADIUS + 1.0, WALL_OUT - AGENT_RADIUS - 1.0
        inside = lambda pts: np.all((pts @ rot.T + pose[:2] >= lo) & (pts @ rot.T + pose[:2] <= hi), axis=-1)
        standoff = self.contact_r - self.contact_m * (AGENT_RADIUS + self.cfg.standoff)
        usable = (along > self.cfg.min_gain) & inside(standoff) & inside(self.contact_exit)
        p_local = (state[:2] - pose[:2]) @ rot
        best, best_rate, planned = None, 0.0, 0
        for i in np.argsort(-np.where(usable, gain, -np.inf)):
            if not usable[i] or planned == self.cfg.ranked_contacts:
                break
            path = self._route(p_local, i, standoff[i], inside)
            if path is None:
                continue
            planned += 1
            length = np.linalg.norm(np.diff(np.vstack([p_local, path]), axis=0), axis=1).sum()
            steps = 1.0 + length / self.cfg.travel_speed + along[i] * self.depth_per_gain[i] / self.cfg.push_speed
            if gain[i] / steps > best_rate:
                best, best_rate, self.path = i, gain[i] / steps, path
        self.contact, self.mode, self.travel_steps = best, ("idle" if best is None else "travel"), 0
        self.plan_pose = pose.copy()

    def _route(self, p_local: np.ndarray, i: int, standoff: np.ndarray, inside):
        """A path to contact i's standoff, with the largest clearance the walls allow; or None."""
        for router in self.routers:
            path = router.plan(p_local, self.contact_exit[i], standoff, inside(router.ring))
            if path is not None:
                return path
        return None

    def _travel(self, state: np.ndarray):
        """Follow the planned path (block frame) towards the contact's standoff point."""
        pose, p = state[2:5], state[:2]
        self.travel_steps += 1
        world = self.path @ _rot(pose[2]).T + pose[:2]
        while len(world) > 1 and (np.linalg.norm(world[0] - p) < self.cfg.waypoint_tol or _passed(p, world)):
            world, self.path = world[1:], self.path[1:]
        if len(world) == 1 and np.linalg.norm(world[0] - p) < self.cfg.arrive_tol + 0.5 * self.noise:
            self.mode = "push"
            return None
        moved = np.abs(np.r_[pose[:2] - self.plan_pose[:2], self.cfg.length_scale * wrap_angle(pose[2] - self.plan_pose[2])])
        if self.travel_steps > self.cfg.max_travel_steps or moved.max() > self.cfg.replan_shift:
            self.mode = "select"  # too slow, or the block was bumped: plan again
            return None
        if len(world) == 1:  # final leg along the contact normal: come to rest at the standoff point
            return self._deadbeat(state, world[0])[0]
        return _carrot(p, world[:-1], self.cfg.lookahead)  # up to the exit point, not round the corner

    def _deadbeat(self, state: np.ndarray, stop: np.ndarray) -> np.ndarray:
        """Targets for this and the next step that bring the pusher to rest at `stop`: [2, 2]."""
        x0 = np.array([state[0:2], state[5:7]])  # rows: position, velocity; columns: x, y
        return self.deadbeat_inv @ (np.array([stop, [0.0, 0.0]]) - self.a2 @ x0)

    def _push(self, state: np.ndarray):
        """Push at the chosen contact: the oracle picks the pusher stop point with the least settled error."""
        i, pose, p = self.contact, state[2:5], state[:2]
        along = self.twist[i] @ self.pose_error(state)
        if along < self.cfg.min_gain:
            self.mode = "select"
            return None
        rot = _rot(pose[2])
        m_w = rot @ self.contact_m[i]
        touch = self.contact_r[i] @ rot.T + pose[:2] - m_w * AGENT_RADIUS
        if np.dot(p - touch, -m_w) > 3.0 * self.cfg.standoff + self.noise:  # knocked out of place: re-plan
            self.mode = "select"
            return None
        depths = np.clip(along * self.depth_per_gain[i] * np.array(self.cfg.depth_scales), 0.3, self.cfg.max_depth)
        costs, firsts = [], []
        for depth in depths:
            cost, first = self._rollout_stop(state, touch + m_w * depth)
            costs.append(cost), firsts.append(first)
        k = int(np.argmin(costs))
        if costs[k] > np.linalg.norm(self.pose_error(state)) - self.cfg.min_gain:
            self.mode = "select"
            return None
        return firsts[k]

    def _rollout_stop(self, state: np.ndarray, stop: np.ndarray):
        """Simulate bringing the pusher to rest at `stop` in two steps (deadbeat) plus one hold step.

        Returns the pose-error norm at the end and this step's pusher target.
        """
        targets = self._deadbeat(state, stop)
        s = state
        for target in (targets[0], targets[1], stop):
            action = np.clip((target - s[:2]) / self.scale, -1.0, 1.0)
            s = self.env.simulate(s, action[None])[0]
        return float(np.linalg.norm(self.pose_error(s))), targets[0]
