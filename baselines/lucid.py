"""Lucid (Hu et al., ASPLOS'23): non-intrusive, non-preemptive packing with interpretable models.

Paper: "Lucid: A Non-intrusive, Scalable and Interpretable Scheduler for Deep Learning Training
Jobs", ASPLOS'23; rules and defaults from its simulator (S-Lab-System-Group/Lucid
``simulation/policy/lucid.py``, ``analyzer/analyzer.py``), as summarised in
``../shared/papers/modern.md`` section 6.

Models:

- Non-preemptive: a running job keeps its GPUs (and its partner) until it finishes.
- Priority = predicted duration x requested GPUs (estimated GPU-time, smaller first; ties to the
  earlier job). The *workload estimate model* is fitted on the fly, per env, from the jobs that
  have finished so far (a job is learnt from when it leaves the view): the geometric mean of the
  finished jobs' durations (their total work, reference-seconds, read from ``view.progress`` and
  ``view.rate``) per (model, GPU-count class 1, 2, 3-4, 5-8, ...), falling back to the class
  alone, then to all jobs, once ``min_samples`` jobs back an estimate; with nothing learnt yet
  every job has the same duration (priority = GPU count). Features are what the scheduler sees
  at submission (model, requested GPUs); durations, ``view.work`` and ``view.remaining`` are
  never read (``needs_durations=False``).
- Sharing score (the *packing analyze model*, :meth:`Lucid.pair_speed`): the speed of a job
  co-located with a job of another model, relative to its speed alone, labelled 2 below
  ``score_thresholds[0]``, 1 below ``score_thresholds[1]``, else 0 (the paper's three labels).
  The speeds are a per-model-pair table: Lucid profiles jobs before they reach the cluster, here
  that profile is the measured pairwise table the simulator runs on (``view.sharing``, Gavel's
  space-sharing measurements), refined on line: each co-location observed (``view.rate`` over
  the job's solo speed ``view.rate_at`` on the same GPUs while the pair runs, or, for a pair that
  ended between two decisions, the progress the remaining job made meanwhile) replaces the
  profile of its model pair by the mean of the observations (per env), so effects the table
  lacks (e.g. fewer CPUs per job with ``resources=True``) are learnt. With ``profile=False``
  there is no profile: an unobserved pair is assumed to share perfectly (speed 1), is packed
  once, and is judged by what was observed from then on.
- Packing (``lucid.py`` L92-111, L178-191): queued jobs are taken in priority order; a job of at
  most ``max_pack_gpus`` GPUs goes onto the GPUs of a running *exclusive* job (one that shares
  with no one) with the same GPU count (and so the same GPU type) when the two sharing scores
  sum to at most ``max_score_sum`` and priority(new) <= ``priority_ratio`` x priority(host); the
  host is the earliest-submitted eligible one (Lucid takes the first of its run list). Both then
  run at the pairwise speeds (:data:`traces.models.SHARING`); when one ends the other is alone
  again at full speed and may host another job. Jobs started exclusively in the same pass may
  host later ones, as in Lucid's loop. Otherwise the job is placed exclusively if it fits (the
  fastest GPU type with room, consolidate-first placement); jobs that do not fit are skipped.
- With sharing off, or in an env whose sharing gate is closed, strict priority order with
  head-of-line blocking (``lucid.py`` L171-176).

Simplifies:

- Sharing-score thresholds: the paper's 0.85 / 0.95 were set on Lucid's benchmark, where many
  jobs are light and share almost for free. The simulator's pairs (Gavel's, GPU-saturating jobs)
  all run below 0.81 of their solo speed, so the paper's thresholds label every job 2 and never
  pack. The default cut-offs are moved down to 0.60 / 0.70: the pairs they admit (score sum
  <= 2) are exactly the six of the table with the highest combined speed, 1.23 to 1.41 times one
  job alone (ResNet-18 with Recommendation, LM with Recommendation, Transformer with
  Recommendation, ResNet-18 with ResNet-18, LM or A3C), and no pair with ResNet-50 packs.
  ``score_thresholds=(0.85, 0.95)`` restores the paper's values.
- Scores are per model pair, not per job: Lucid's decision tree labels each job from its own
  features (model, batch size, dataset, AMP) by its mean speed over a set of partners; the
  simulator's jobs differ only by model, and a job's speed depends on its partner's model, so
  the table keeps the pair.
- No GPU memory model in the simulator: Lucid's cap (the two jobs' GPU memory <= 24 GB) is not
  applied.
- With CPUs and memory modelled (``resources=True``), a packed pair splits its GPUs' CPUs and
  host memory half and half, and the one left alone gets them all back (the core's rule for
  shared GPUs; Lucid's testbed does not model CPUs).
- No profiling pool: Lucid first runs small new jobs for up to 200 s on a dedicated pool (jobs
  that end there never reach the cluster) to profile them. Here nothing needs profiling (the
  estimators use features known at submission and the pairwise table), and every GPU belongs to
  the main cluster.
- The load-forecast gate (Lucid's prescient adaptive sharing, an EBM forecast of upcoming GPU
  jobs, sharing off when it is <= 2; active on the Venus trace only) becomes a reactive gate
  (``load_gate``): an env packs only while its waiting jobs ask for more GPUs than are free.
- The workload estimate model is a per-class mean of log durations, not a GA2M/EBM on user,
  job name and submission-time features (the view exposes neither user nor VC).
- Event-driven (a decision at every arrival and completion) rather than Lucid's 1 s tick.
- Where durations are not predictable from the model and GPU count (the Philly windows of
  ``tests/test_baselines.py``, whose models are drawn at random), the priority is about GPU
  count only, and a long job that hosts a stream of short guests runs slowed for its whole life:
  there Lucid's average JCT is 25-35% above Tiresias' (still below its own no-sharing variant
  and far below FIFO). Its test workload has recurring jobs whose model predicts the duration,
  the setting Lucid's estimator is built for.
- The Gymnasium env's actions (picks or scores, :mod:`baselines.adapter`) cannot express GPU
  sharing: there Lucid runs its no-sharing rule (strict priority order, as with
  ``sharing=False``), which the env carries out exactly (a translated packing allocation would
  start guests exclusively in workload order, and with ``preemption=True`` a round's re-pick could
  then preempt a job, which Lucid never does).

Knobs:

- ``score_thresholds=(0.60, 0.70)``: co-located speed below which a job's score is 2, 1 (paper
  0.85, 0.95; see above).
- ``max_score_sum=2``: the largest sum of the two scores of a packed pair (paper 2).
- ``priority_ratio=2.0``: a job packs only onto a host whose priority is at least its own / 2.
- ``max_pack_gpus=8``: larger jobs never pack (paper: jobs of <= 8 GPUs).
- ``sharing=True``: pack at all (False: strict priority order, head-of-line blocking).
- ``load_gate=True``: pack only while an env's queue asks for more GPUs than are free.
- ``profile=True``: start the pair table from the simulator's measured pairs (False: from
  nothing, learning every pair by trying it once).
- ``min_samples=3``: finished jobs needed before a duration estimate is used.
- ``round_length=None``: event-driven.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from baselines.base import Baseline, BaselineKnobs, order_scores, serve_order
from envs.lowering import fastest_with_room
from envs.policy import Allocation, ClusterView, Priority

_NO_JOB = np.iinfo(np.int64).max
_BUCKETS = 16  # GPU-count classes: 1, 2, 3-4, 5-8, ..., 2^14+
_CHUNK = 64  # queue positions looked at per pass of the allocation


def gpu_class(gpus: np.ndarray) -> np.ndarray:
    """GPU-count class of the duration estimator: 0 for 1 GPU, 1 for 2, 2 for 3-4, 3 for 5-8..."""
    g = np.maximum(np.asarray(gpus, dtype=np.int64), 1)
    return np.clip(np.ceil(np.log2(g) - 1e-9).astype(np.int64), 0, _BUCKETS - 1)


def sharing_score(speed: np.ndarray, thresholds: tuple[float, float]) -> np.ndarray:
    """Lucid's sharing score of a co-located speed (relative to alone): 2 below
    ``thresholds[0]``, 1 below ``thresholds[1]``, else 0."""
    speed = np.asarray(speed, dtype=np.float64)
    return np.where(speed < thresholds[0], 2, np.where(speed < thresholds[1], 1, 0))


class Lucid(Baseline):
    """Non-preemptive GPU-time priority with packing of jobs that co-locate well."""

    name = "lucid"
    needs_durations = False
    job_fields: ClassVar[dict[str, tuple[type, object]]] = {
        "observed_with": (np.int64, -1),  # partner job whose co-location was learnt last
    }

    @dataclass(frozen=True)
    class Knobs(BaselineKnobs):
        score_thresholds: tuple[float, float] = (0.60, 0.70)
        """co-located speed below which a job's sharing score is 2, 1 (paper 0.85, 0.95)"""
        max_score_sum: int = 2
        """the largest sum of the two scores of a packed pair, in [0, 4] (paper 2)"""
        priority_ratio: float = 2.0
        """a job packs only onto a host whose priority is at least its own / this"""
        max_pack_gpus: int = 8
        """larger jobs never pack (paper: jobs of <= 8 GPUs)"""
        sharing: bool = True
        """pack at all (``False``: strict priority order, head-of-line blocking)"""
        load_gate: bool = True
        """pack only while an env's queue asks for more GPUs than are free"""
        profile: bool = True
        """start the pair table from the simulator's measured pairs (``False``: learn each by trying it)"""
        min_samples: int = 3
        """finished jobs needed before a duration estimate is used"""
        round_length: float | None = None
        """re-decision period, seconds (``None``: event-driven)"""

        def __post_init__(self) -> None:
            score_thresholds, max_score_sum, priority_ratio = self.score_thresholds, self.max_score_sum, self.priority_ratio
            max_pack_gpus, min_samples, round_length = self.max_pack_gpus, self.min_samples, self.round_length
            th = tuple(float(x) for x in score_thresholds)
            if len(th) != 2 or not (0.0 < th[0] <= th[1]) or not all(np.isfinite(th)):
                raise ValueError(f"score_thresholds must be two finite speeds 0 < low <= high, got {score_thresholds}")
            if isinstance(max_score_sum, bool) or int(max_score_sum) != max_score_sum or not 0 <= max_score_sum <= 4:
                raise ValueError(f"max_score_sum must be an integer in [0, 4], got {max_score_sum}")
            if not (np.isfinite(priority_ratio) and priority_ratio > 0):
                raise ValueError(f"priority_ratio must be a finite number > 0, got {priority_ratio}")
            if isinstance(max_pack_gpus, bool) or int(max_pack_gpus) != max_pack_gpus or max_pack_gpus < 1:
                raise ValueError(f"max_pack_gpus must be an integer >= 1, got {max_pack_gpus}")
            if isinstance(min_samples, bool) or int(min_samples) != min_samples or min_samples < 1:
                raise ValueError(f"min_samples must be an integer >= 1, got {min_samples}")
            if round_length is not None and not (np.isfinite(round_length) and round_length > 0):
                raise ValueError(f"round_length must be > 0 or None, got {round_length}")
            self._set(score_thresholds=th, max_score_sum=int(max_score_sum), priority_ratio=float(priority_ratio),
                      max_pack_gpus=int(max_pack_gpus), sharing=bool(self.sharing), load_gate=bool(self.load_gate),
                      profile=bool(self.profile), min_samples=int(min_samples),
                      round_length=None if round_length is None else float(round_length))

    # ------------------------------------------------------------------ state
    def reset(self, view: ClusterView) -> None:
        super().reset(view)
        E = view.num_envs
        self._prior = np.array(view.sharing, dtype=np.float64)  # the profiled pairwise speeds
        M = self._prior.shape[0]
        self._dur_n = np.zeros((E, M, _BUCKETS))  # finished jobs per (model, GPU class)
        self._dur_log = np.zeros((E, M, _BUCKETS))  # sum of their log durations
        self._pair_n = np.zeros((E, M, M))  # observed co-locations per (model, partner model)
        self._pair_sum = np.zeros((E, M, M))  # sum of the observed relative speeds
        self._snap: dict[str, np.ndarray] = {}
        self._snap_clock = np.full(E, np.nan)
        self._new_snapshot(E, 0)

    def _new_snapshot(self, E: int, S: int) -> None:
        self._snap = {"job": np.full((E, S), -1, dtype=np.int64), "run": np.zeros((E, S), dtype=bool),
                      "prog": np.zeros((E, S)), "rate": np.zeros((E, S)),
                      "model": np.zeros((E, S), dtype=np.int64), "gpus": np.ones((E, S), dtype=np.int64),
                      "pjob": np.full((E, S), -1, dtype=np.int64), "pmodel": np.zeros((E, S), dtype=np.int64)}

    def reset_envs(self, envs: np.ndarray) -> None:
        super().reset_envs(envs)
        if self.jobs is None:
            return
        for arr in (self._dur_n, self._dur_log, self._pair_n, self._pair_sum):
            arr[envs] = 0.0
        self._snap["job"][envs] = -1
        self._snap["run"][envs] = False
        self._snap_clock[envs] = np.nan

    # ------------------------------------------------------------------ estimators
    def predict(self, model: np.ndarray, gpus: np.ndarray) -> np.ndarray:
        """``(E, K)`` predicted duration (reference-seconds) of jobs of ``model`` on ``gpus``
        (each ``(E, K)``) from the jobs finished so far in each env (see the module docstring);
        1.0 where nothing is learnt yet."""
        rows = np.arange(self._dur_n.shape[0])[:, None]
        b = gpu_class(gpus)
        m = np.asarray(model, dtype=np.int64)
        n_mb, l_mb = self._dur_n[rows, m, b], self._dur_log[rows, m, b]
        n_b, l_b = self._dur_n.sum(axis=1)[rows, b], self._dur_log.sum(axis=1)[rows, b]
        n_all, l_all = self._dur_n.sum(axis=(1, 2))[:, None], self._dur_log.sum(axis=(1, 2))[:, None]
        k = self.min_samples
        with np.errstate(invalid="ignore", divide="ignore"):
            log = np.where(n_mb >= k, l_mb / n_mb,
                           np.where(n_b >= k, l_b / n_b, np.where(n_all >= k, l_all / n_all, 0.0)))
        return np.exp(log)

    def priority(self, view: ClusterView) -> np.ndarray:
        """``(E, S)`` Lucid's priority (predicted duration x GPUs; smaller is served first)."""
        return self.predict(view.model, view.gpus) * view.gpus

    def pair_speed(self) -> np.ndarray:
        """``(E, M, M)`` speed of a job of the first model sharing its GPUs with one of the second,
        relative to alone: the mean observed speed where the pair was seen, else the profile."""
        prior = self._prior if self.profile else np.ones_like(self._prior)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(self._pair_n > 0, self._pair_sum / self._pair_n, prior[None])

    def pair_ok(self) -> np.ndarray:
        """``(E, M, M)``: a job of the first model may share with a running job of the second
        (their two sharing scores, from :meth:`pair_speed`, sum to at most ``max_score_sum``)."""
        score = sharing_score(self.pair_speed(), self.score_thresholds)
        return score + score.transpose(0, 2, 1) <= self.max_score_sum

    def _observe(self, view: ClusterView) -> None:
        """Learn from the jobs that finished since the last decision (durations) and from the
        co-locations running now (pairwise speeds)."""
        job = view.job
        E, S = job.shape
        snap = self._snap
        if snap["job"].shape[1] < S:  # the core grew its slot table
            old = snap
            self._new_snapshot(E, S)
            for key, arr in old.items():
                self._snap[key][:, : arr.shape[1]] = arr
            snap = self._snap
        clock = view.clock
        # durations: a job that ran at the last decision and has left its slot has finished
        gone = snap["run"][:, :S] & (snap["job"][:, :S] != job)
        if gone.any():
            e, s = np.nonzero(gone)
            dt = np.nan_to_num(clock[e] - self._snap_clock[e])
            work = np.maximum(snap["prog"][e, s] + snap["rate"][e, s] * dt, 1.0)
            np.add.at(self._dur_n, (e, snap["model"][e, s], gpu_class(snap["gpus"][e, s])), 1.0)
            np.add.at(self._dur_log, (e, snap["model"][e, s], gpu_class(snap["gpus"][e, s])), np.log(work))
        # pairwise speeds, once per (job, partner job): a pair running now (its current rate), or
        # a pair that ended since the last decision, seen from the job that stays (its progress
        # over the interval; rates change only at events, and every event is a decision)
        run = view.running
        partner = view.partner
        ps = np.maximum(partner, 0)
        rows = np.arange(E)[:, None]
        now = run & (partner >= 0) & run[rows, ps] & ~view.restarting
        dt = (clock - self._snap_clock)[:, None]
        ended = (run & (snap["job"][:, :S] == job) & snap["run"][:, :S] & (snap["pjob"][:, :S] >= 0)
                 & ~now & (dt > 0))
        obs = now | ended
        if view.network:
            obs &= (view.placement > 0).sum(axis=2) == 1  # network slowdowns are not sharing
        if obs.any():
            pjob = np.where(now, job[rows, ps], snap["pjob"][:, :S])
            seen = self.jobs.gather("observed_with", view)
            new = obs & (seen != pjob)
            if new.any():
                nodes = (view.placement > 0).sum(axis=2)
                solo = view.rate_at(view.allocated, view.gpu_type, nodes=np.maximum(nodes, 1))
                with np.errstate(invalid="ignore", divide="ignore"):
                    rate = np.where(now, view.rate, (view.progress - snap["prog"][:, :S]) / dt)
                pm = np.where(now, view.model[rows, ps], snap["pmodel"][:, :S])
                e, s = np.nonzero(new & (solo > 0))
                np.add.at(self._pair_n, (e, view.model[e, s], pm[e, s]), 1.0)
                np.add.at(self._pair_sum, (e, view.model[e, s], pm[e, s]), rate[e, s] / solo[e, s])
                self.jobs.scatter("observed_with", view, pjob, new)

    def _snapshot(self, view: ClusterView, n: np.ndarray, t: np.ndarray, guest_of: np.ndarray,
                  new_host: np.ndarray) -> None:
        """Remember each job's progress and the rate it will have until the next event (the
        current rate for jobs that keep running unchanged, a prediction for jobs starting now and
        for hosts that take a guest now)."""
        job = view.job
        E, S = job.shape
        snap = self._snap
        rows = np.arange(E)[:, None]
        run_now = view.running
        rate = np.array(view.rate, dtype=np.float64)
        need = (n > 0) & ((~run_now) | (rate <= 0))
        if need.any():
            solo = view.rate_at(n, t)
            speed = self.pair_speed()
            gm = view.model
            hm = view.model[rows, np.maximum(guest_of, 0)]
            factor = np.where(guest_of >= 0, speed[rows, gm, hm], 1.0)
            rate = np.where(need, solo * factor, rate)
        if (new_host >= 0).any():
            hm = view.model[rows, np.maximum(new_host, 0)]
            rate = np.where(new_host >= 0, rate * self.pair_speed()[rows, view.model, hm], rate)
        ps = np.where(view.running & (view.partner >= 0), view.partner, np.maximum(guest_of, new_host))
        snap["pjob"][:, :S] = np.where((ps >= 0) & (n > 0), job[rows, np.maximum(ps, 0)], -1)
        snap["pmodel"][:, :S] = view.model[rows, np.maximum(ps, 0)]
        snap["job"][:, :S] = job
        snap["run"][:, :S] = n > 0
        snap["prog"][:, :S] = view.progress
        snap["rate"][:, :S] = rate
        snap["model"][:, :S] = view.model
        snap["gpus"][:, :S] = view.gpus
        snap["job"][:, S:] = -1
        snap["run"][:, S:] = False
        snap["pjob"][:, S:] = -1
        self._snap_clock = np.array(view.clock, dtype=np.float64)

    # ------------------------------------------------------------------ decision
    def plan(self, view: ClusterView) -> Priority | Allocation | None:
        self.jobs.ensure(view)
        self._observe(view)
        wait = view.waiting
        E = view.num_envs
        gpus = view.gpus
        free_t = view.free_per_type().astype(np.int64)  # (E, T)
        share = np.zeros(E, dtype=bool)
        if self.sharing and view.can_share:  # Gym actions cannot express sharing
            share = wait.any(axis=1)
            if self.load_gate:
                share &= np.where(wait, gpus, 0).sum(axis=1) > free_t.sum(axis=1)
        prio = self.priority(view)
        scores = order_scores(view, [prio], wait)
        n, t, partner, guest_of, new_host = self._pack(view, prio, scores, share, free_t)
        self._snapshot(view, n, t, guest_of, new_host)
        if not share.any():
            return Priority(scores, backfill=False) if wait.any() else None
        if not ((n > 0) & wait).any():
            return None
        return Allocation(n, t, partner=partner)

    def _pack(self, view: ClusterView, prio: np.ndarray, scores: np.ndarray, share: np.ndarray,
              free_t: np.ndarray):
        """Lucid's allocation pass: queued jobs in ``scores`` order, each packed onto an eligible
        host (envs in ``share``) or placed exclusively if it fits; envs not in ``share`` stop at
        the first job that does not fit. Returns ``(n, t, partner, guest_of, new_host)``:
        ``guest_of`` is the host slot of jobs packed now, ``new_host`` the guest slot of hosts
        that take one now (-1 elsewhere).

        Rather than stepping through the queue one job at a time, each env jumps to its next job
        that can act (pack or fit), looking ``_CHUNK`` queue positions ahead at once against a
        compact list of the hosts still free to share: the passes number the jobs started plus
        the queue length / ``_CHUNK``, which keeps long queues cheap."""
        E, S = view.job.shape
        run = view.running
        wait = view.waiting
        job = view.job
        model = view.model
        gpus = view.gpus
        free_t = free_t.copy()
        n = np.where(run, view.allocated, 0).astype(np.int64)
        t = np.array(view.gpu_type, dtype=np.int64)
        partner = np.where(view.guest & run, view.partner, -1).astype(np.int64)
        guest_of = np.full((E, S), -1, dtype=np.int64)
        new_host = np.full((E, S), -1, dtype=np.int64)
        order = serve_order(view, scores, wait)
        count = wait.sum(axis=1)
        R = int(count.max(initial=0))
        if R == 0:
            return n, t, partner, guest_of, new_host
        rows = np.arange(E)[:, None]
        ordr = order[:, :R]
        g_r, m_r, p_r = gpus[rows, ordr], model[rows, ordr], prio[rows, ordr]
        spd = np.asarray(view.speed)
        sharing = bool(share.any())
        if sharing:
            pair_ok = self.pair_ok()  # (E, guest model, host model)
            # hosts: running jobs that share with no one, earliest job first; jobs started alone
            # in this pass are appended (each holds at least one free GPU: capacity bounded)
            host0 = run & (view.partner < 0) & share[:, None]
            H0 = int(host0.sum(axis=1).max(initial=0))
            H = max(1, H0 + int(np.where(share, free_t.sum(axis=1), 0).max(initial=0)))
            h_slot = np.full((E, H), -1, dtype=np.int64)
            if H0:
                ho = np.argsort(np.where(host0, job, _NO_JOB), axis=1, kind="stable")[:, :H0]
                h_slot[:, :H0] = np.where(np.take_along_axis(host0, ho, axis=1), ho, -1)
            h_cnt = host0.sum(axis=1)
            h_avail = h_slot >= 0
        pos = np.zeros(E, dtype=np.int64)
        live = count > 0
        ahead = np.arange(_CHUNK)
        while live.any():
            e = np.flatnonzero(live)
            ee = e[:, None]
            r = pos[e][:, None] + ahead
            inq = r < count[e][:, None]
            rc = np.minimum(r, R - 1)
            g = g_r[ee, rc]
            fit = inq & (free_t[e][:, None, :] >= g[:, :, None]).any(axis=2)
            act = fit
            if sharing:
                hs = np.maximum(h_slot[e], 0)
                elig = h_avail[e][:, None, :] & (n[ee, hs][:, None, :] == g[:, :, None])
                elig &= (inq & share[e][:, None] & (g <= self.max_pack_gpus))[:, :, None]
                if elig.any():
                    elig &= p_r[ee, rc][:, :, None] <= self.priority_ratio * prio[ee, hs][:, None, :]
                    elig &= pair_ok[e[:, None, None], m_r[ee, rc][:, :, None], model[ee, hs][:, None, :]]
                can_pack = elig.any(axis=2)
                act = fit | can_pack
            hol = ~share[e]
            stop = hol & ~fit[:, 0]  # strict order: the head does not fit (or the queue is done)
            has = act.any(axis=1)
            skip = ~hol & ~has  # nothing in this stretch of the queue can act: look further
            pos[e[skip]] += _CHUNK
            live[e[skip]] = pos[e[skip]] < count[e[skip]]
            live[e[stop]] = False
            do = np.flatnonzero(~stop & ~skip)
            if len(do) == 0:
                continue
            ed = e[do]
            first = act[do].argmax(axis=1)  # 0 for strict-order envs (their head fits)
            s = ordr[ed, pos[ed] + first]
            gd = g[do, first]
            packed = can_pack[do, first] if sharing else np.zeros(len(do), dtype=bool)
            if packed.any():
                ip, ep, sp = do[packed], ed[packed], s[packed]
                hidx = np.where(elig[ip, first[packed]], job[ep[:, None], hs[ip]], _NO_JOB).argmin(axis=1)
                hsl = h_slot[ep, hidx]
                n[ep, sp] = gd[packed]
                t[ep, sp] = t[ep, hsl]
                partner[ep, sp] = hsl
                guest_of[ep, sp] = hsl
                new_host[ep, hsl] = sp
                h_avail[ep, hidx] = False
            alone = ~packed
            if alone.any():
                xe, xs, xg = ed[alone], s[alone], gd[alone]
                room = free_t[xe] >= xg[:, None]
                k = fastest_with_room(room, spd[model[xe, xs]])
                free_t[xe, k] -= xg
                n[xe, xs] = xg
                t[xe, xs] = k
                if sharing:  # started alone now: may host a later job
                    add = share[xe]
                    ae, as_ = xe[add], xs[add]
                    h_slot[ae, h_cnt[ae]] = as_
                    h_avail[ae, h_cnt[ae]] = True
                    h_cnt[ae] += 1
            pos[ed] += first + 1
            live[ed] = pos[ed] < count[ed]
        return n, t, partner, guest_of, new_host
