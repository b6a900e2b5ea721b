"""Allocation: starting and stopping jobs, carrying out a whole allocation (:meth:`apply`),
checking one (:meth:`check_allocation`), and the shared gang allocator (:meth:`greedy`)."""

from __future__ import annotations

import numpy as np

from envs.core.state import EMPTY, INF, RUNNING, WAITING


class AllocationError(ValueError):
    """An allocation the cluster cannot carry out (names the env, job and what was wrong)."""


class AllocationMixin:
    """Decisions reach the core here: ``start``/``stop`` per job, ``apply`` per allocation."""

    # ------------------------------------------------------------------ start and stop
    def start(
        self,
        e: np.ndarray,
        s: np.ndarray,
        t: np.ndarray,
        n: np.ndarray,
        take: np.ndarray | None = None,
        in_place: np.ndarray | None = None,
        restart_until: np.ndarray | None = None,
        share: np.ndarray | None = None,
    ) -> None:
        """Start jobs (one per env in ``e``) in slots ``s`` on ``n`` GPUs of type ``t``.

        ``share`` (slot per row, -1 for none) starts a job on the GPUs of a running job (space
        sharing): it takes that job's placement without using free GPUs.

        ``take`` (``(len(e), N)``) is an explicit placement; otherwise the placer decides. The
        caller has checked that the GPUs are free. A job that ran before pays the restart
        overhead, unless ``in_place`` marks it as resuming on exactly the placement it held a
        moment ago (then ``restart_until`` restores its unfinished restart, if any). A first
        start records the job's first start time.
        """
        if len(e) == 0:
            return
        if (self.s_status[e, s] != WAITING).any():
            i = int(np.flatnonzero(self.s_status[e, s] != WAITING)[0])
            what = "already running (placed twice)" if self.s_status[e[i], s[i]] == RUNNING else "finished or absent"
            raise AllocationError(f"env {e[i]}, slot {s[i]}: cannot start a job that is {what}")
        self._cache = None
        shared = np.zeros(len(e), dtype=bool) if share is None else np.asarray(share) >= 0
        take = self._placement(e, t, n, take, shared)
        if shared.any():
            take = self._join_hosts(e, s, np.asarray(share), shared, take)
        self._hold_gpus(e, s, t, n, take, shared)
        if self.resources:
            self._grant_started(e, s, np.asarray(share) if share is not None else None, shared)
        self.s_status[e, s] = RUNNING
        self._set_base(e, s)
        again = self._charge_restart(e, s, in_place, restart_until)
        self._record_start(e, s, n, again)

    def _placement(self, e: np.ndarray, t: np.ndarray, n: np.ndarray, take: np.ndarray | None,
                   shared: np.ndarray) -> np.ndarray:
        """GPUs per node for each starting job: ``take`` where given, else the placer's."""
        if take is None and not shared.any():
            return self.placer(self.free[e], self.node_type, t, n)
        take = np.zeros((len(e), self.N), dtype=np.int64) if take is None else np.array(take, dtype=np.int64)
        need = ~shared & (take.sum(axis=1) == 0)
        if need.any():
            take[need] = self.placer(self.free[e[need]], self.node_type, t[need], n[need])
        return take

    def _join_hosts(self, e: np.ndarray, s: np.ndarray, share: np.ndarray, shared: np.ndarray,
                    take: np.ndarray) -> np.ndarray:
        """Guests take their host's placement; both are marked partners (rates become coupled)."""
        take = np.array(take, copy=True)
        host = share[shared]
        take[shared] = self.s_place[e[shared], host]
        self.s_partner[e[shared], host] = s[shared]
        self.s_partner[e[shared], s[shared]] = host
        self.s_guest[e[shared], s[shared]] = True
        self.coupled = True
        self._dirty[e[shared]] = True
        return take

    def _hold_gpus(self, e: np.ndarray, s: np.ndarray, t: np.ndarray, n: np.ndarray, take: np.ndarray,
                   shared: np.ndarray) -> None:
        """Take the GPUs of the placements (guests use their host's) and record the allocation."""
        self.free[e] -= np.where(shared[:, None], 0, take)
        self.s_place[e, s] = take
        nodes = (take > 0).sum(axis=1)
        self.s_n[e, s] = n
        self.s_t[e, s] = t
        self.s_nodes[e, s] = nodes

    def _grant_started(self, e: np.ndarray, s: np.ndarray, share: np.ndarray | None, shared: np.ndarray) -> None:
        """CPUs and memory of starting jobs: a grant on their nodes, or half their host's."""
        own = ~shared
        if own.any():
            self._grant(e[own], s[own])
        if shared.any():  # a guest shares its host's CPUs and memory, half each
            es, ss, hs = e[shared], s[shared], share[shared]
            for name in ("s_cpu", "s_mem"):
                arr = getattr(self, name)
                arr[es, hs] /= 2.0
                arr[es, ss] = arr[es, hs]
            self._set_base(es, hs)

    def _charge_restart(self, e: np.ndarray, s: np.ndarray, in_place: np.ndarray | None,
                        restart_until: np.ndarray | None) -> np.ndarray:
        """Jobs that ran before hold their GPUs without progress for their restart cost (unless
        resumed in place); returns which paid a restart."""
        j = self.s_job[e, s]
        again = self.s_started[e, s]
        until = np.where(again, self.clock[e] + self.s_restart_cost[e, s], -INF)
        if in_place is not None:
            again = again & ~in_place
            until = np.where(in_place, restart_until, until)
        self.s_restart_until[e, s] = until
        self.j_restarts[e[again], j[again]] += 1
        return again

    def _record_start(self, e: np.ndarray, s: np.ndarray, n: np.ndarray, again: np.ndarray) -> None:
        """First starts record the job's start time; every start records its GPU count."""
        j = self.s_job[e, s]
        first = ~self.s_started[e, s]  # not ~again: a job resumed in place has started before
        self.j_start[e[first], j[first]] = self.clock[e[first]]
        self.s_started[e, s] = True
        self.j_gpus_used[e, j] = n

    def stop(self, e: np.ndarray, s: np.ndarray, *, preempted: bool = True) -> None:
        """Take running jobs off their GPUs (they wait again, progress kept: a checkpoint)."""
        if len(e) == 0:
            return
        self._cache = None
        self._release(e, s)
        self.s_place[e, s] = 0
        self.s_n[e, s] = 0
        self.s_rate[e, s] = 0.0
        self.s_nodes[e, s] = 0
        self.s_status[e, s] = WAITING
        self.s_restart_until[e, s] = -INF
        if self.resources:
            self._top_up(np.unique(e))
        if preempted:
            self.j_preempt[e, self.s_job[e, s]] += 1

    def _release(self, e: np.ndarray, s: np.ndarray) -> None:
        """Give back the GPUs, CPUs and memory of jobs leaving their GPUs (``e`` may repeat). GPUs
        shared by two jobs are freed when the last of the two leaves."""
        place = self.s_place[e, s]
        p = self.s_partner[e, s]
        has = p >= 0
        pr = np.maximum(p, 0)
        stay = np.zeros(len(e), dtype=bool)  # partners that keep running on the shared GPUs
        leaving_too = stay
        if has.any():
            leaving_too = has & np.isin(e * self.S + pr, e * self.S + s)
            stay = has & (self.s_status[e, pr] == RUNNING) & ~leaving_too
        if self.resources:
            # a job leaving a shared GPU hands its CPUs and memory to the job that stays
            give = stay
            back = ~give
            np.add.at(self.free_cpu, e[back], place[back] * self.s_cpu[e[back], s[back]][:, None])
            np.add.at(self.free_mem, e[back], place[back] * self.s_mem[e[back], s[back]][:, None])
            if give.any():
                self.s_cpu[e[give], pr[give]] += self.s_cpu[e[give], s[give]]
                self.s_mem[e[give], pr[give]] += self.s_mem[e[give], s[give]]
            self.s_cpu[e, s] = 0.0
            self.s_mem[e, s] = 0.0
        if has.any():
            keep_gpus = stay | (has & leaving_too & (s > pr))  # of a pair leaving together, one frees
            place = np.where(keep_gpus[:, None], 0, place)
            self.s_partner[e[has], pr[has]] = -1
            self.s_guest[e[has], pr[has]] = False
            self.s_partner[e, s] = -1
            self.s_guest[e, s] = False
            self._dirty[e[has]] = True
        if self.coupled:
            self._dirty[e] = True
        np.add.at(self.free, e, place)  # e repeats: accumulate
        if self.resources and stay.any():
            self._set_base(e[stay], pr[stay])

    # ------------------------------------------------------------------ whole allocations
    def check_allocation(self, n: np.ndarray, t: np.ndarray, envs: np.ndarray, partner: np.ndarray | None = None) -> None:
        """Raise :class:`AllocationError` unless ``(n, t)`` (each ``(E, S)``, with GPU sharing
        ``partner``) is feasible."""
        n = np.asarray(n)
        t = np.asarray(t)
        if n.shape != (self.E, self.S) or t.shape != (self.E, self.S):
            raise AllocationError(f"allocation must have shape (num_envs, slots) = {(self.E, self.S)}, got {n.shape} and {t.shape}")
        m = envs[:, None]
        if (m & (n < 0)).any():
            e, s = np.argwhere(m & (n < 0))[0]
            raise AllocationError(f"env {e}, slot {s}: negative GPU count {n[e, s]}")
        bad = m & (n > 0) & (self.s_status == EMPTY)
        if bad.any():
            e, s = np.argwhere(bad)[0]
            raise AllocationError(f"env {e}, slot {s}: allocating to a finished or absent job")
        bad = m & (n > 0) & ((t < 0) | (t >= self.T))
        if bad.any():
            e, s = np.argwhere(bad)[0]
            raise AllocationError(f"env {e}, slot {s}: unknown GPU type index {t[e, s]} (cluster has {self.T})")
        bad = m & (n > 0) & ((n < self.s_min) | (n > self.s_max))
        if bad.any():
            e, s = np.argwhere(bad)[0]
            raise AllocationError(
                f"env {e}, job {self.s_job[e, s]}: {n[e, s]} GPUs outside its bounds "
                f"[{self.s_min[e, s]}, {self.s_max[e, s]}] (a rigid gang gets exactly its request)")
        guest = np.zeros(n.shape, dtype=bool)
        if partner is not None:
            guest = m & (n > 0) & (partner >= 0)
            if guest.any():
                e, s = np.nonzero(guest)
                h = partner[e, s]
                bad = (h >= self.S) | (h == s)
                hs = np.clip(h, 0, self.S - 1)
                bad |= (n[e, hs] != n[e, s]) | (t[e, hs] != t[e, s]) | (partner[e, hs] >= 0) | (self.s_status[e, hs] == EMPTY)
                if bad.any():
                    i = int(np.flatnonzero(bad)[0])
                    raise AllocationError(
                        f"env {e[i]}, slot {s[i]}: cannot share the GPUs of slot {h[i]} (it must hold a job on the same "
                        "GPU count and type that shares with no one else)")
                key = e * self.S + hs
                if len(np.unique(key)) < len(key):
                    raise AllocationError("a job's GPUs can be shared with at most one other job")
        per_type = np.zeros((self.E, self.T), dtype=np.int64)
        for k in range(self.T):
            per_type[:, k] = np.where((t == k) & ~guest, n, 0).sum(axis=1)
        over = envs[:, None] & (per_type > self.capacity[None, :])
        if over.any():
            e, k = np.argwhere(over)[0]
            raise AllocationError(f"env {e}: {per_type[e, k]} GPUs of type {self.gpu_types[k]!r} allocated, cluster has {self.capacity[k]}")

    def apply(self, n: np.ndarray, t: np.ndarray, envs: np.ndarray | None = None, *, check: bool = True,
              adaptive: np.ndarray | None = None, partner: np.ndarray | None = None,
              place: np.ndarray | None = None, cpus: np.ndarray | None = None, mem: np.ndarray | None = None,
              shift: np.ndarray | None = None) -> None:
        """Make ``(n, t)`` the allocation of the envs in the boolean mask ``envs``.

        Jobs whose count and type are unchanged keep their placement and pay nothing; running
        jobs that get 0 are preempted; changed jobs are moved (and pay the restart overhead);
        new jobs are placed in workload order by the placer. ``check=False`` skips validation
        (for allocations the core computed itself, such as :meth:`greedy`'s).

        Optional parts (each ``(E, S)``; ``None`` leaves it as it is):

        - ``adaptive`` (bool): goodput jobs train at their goodput-optimal batch size rather than
          their own; switching costs no restart;
        - ``partner`` (slot, -1 none): the job shares the GPUs of the job in that slot, which
          must run on the same count and type and host no one else (space sharing); a guest
          leaves when its host is moved;
        - ``place`` (``(E, S, N)``): explicit GPUs per node for jobs that (re)start (rows of
          zeros: the placer decides); a different placement for a running job moves it;
        - ``cpus``, ``mem`` (per GPU, NaN: GPU-proportional): asked CPUs and memory; a running
          job whose ask changes is re-granted in place (the core grants what its nodes have);
        - ``shift`` (bool): the job's communication is time-shifted to interleave with others.
        """
        envs = np.ones(self.E, dtype=bool) if envs is None else np.asarray(envs, dtype=bool)
        n = np.where(envs[:, None], np.asarray(n, dtype=np.int64), self.s_n)
        t = np.where(envs[:, None] & (n > 0), np.asarray(t, dtype=np.int64), self.s_t)
        run = self.s_status == RUNNING
        live = envs[:, None] & (self.s_status != EMPTY)
        if adaptive is not None:
            adaptive = np.where(live, np.asarray(adaptive, dtype=bool), self.s_adapt)
            flip = adaptive != self.s_adapt
            if flip.any():
                self._cache = None
                self.s_adapt = adaptive
                e, s = np.nonzero(flip & run)
                self._set_base(e, s)
        if shift is not None:
            shift = np.where(live, np.asarray(shift, dtype=bool), self.s_shift)
            if (shift != self.s_shift).any():
                self._cache = None
                self.s_shift = shift
                if self.coupled:
                    self._dirty |= envs
        regrant = np.zeros_like(run)
        for ask, name in ((cpus, "s_cpu_ask"), (mem, "s_mem_ask")):
            if ask is None:
                continue
            old = getattr(self, name)
            new = np.where(live, np.asarray(ask, dtype=np.float64), old)
            changed = ~((new == old) | (np.isnan(new) & np.isnan(old)))
            if changed.any():
                setattr(self, name, new)
                regrant |= changed & run
        cur_p = np.where(self.s_guest, self.s_partner, -1)
        p = cur_p if partner is None else np.where(live & (n > 0), np.asarray(partner, dtype=np.int64), -1)
        keep = run & (n == self.s_n) & (t == self.s_t) & (p == cur_p)
        explicit = np.zeros_like(run)
        if place is not None:
            place = np.asarray(place, dtype=np.int64)
            if place.shape != (self.E, self.S, self.N):
                raise AllocationError(f"place must have shape (num_envs, slots, nodes) = {(self.E, self.S, self.N)}, got {place.shape}")
            explicit = envs[:, None] & (n > 0) & (p < 0) & (place.sum(axis=2) > 0)
            keep &= ~(explicit & (place != self.s_place).any(axis=2))
        rows = np.arange(self.E)[:, None]
        keep &= (p < 0) | keep[rows, np.maximum(p, 0)]  # a guest stays only with its host
        regrant &= keep & ~self.s_guest & (self.s_partner < 0)
        if ((n == 0) & ~run | keep).all():
            self._regrant(regrant)
            return  # nothing else changes
        if check:
            self.check_allocation(n, t, envs, partner=p)
            if place is not None:
                self._check_place(n, t, place, explicit & ~keep, run & ~keep)
        change = run & ~keep
        e, s = np.nonzero(change)
        self.stop(e, s, preempted=False)
        lost = n[e, s] == 0
        self.j_preempt[e[lost], self.s_job[e[lost], s[lost]]] += 1
        self._regrant(regrant)
        todo = (n > 0) & ~keep
        if place is not None:
            self._place_in_order(todo & explicit, n, t, place=place)
        self._place_in_order(todo & ~explicit & (p < 0), n, t)
        self._place_in_order(todo & (p >= 0), n, t, share=p)

    def _check_place(self, n: np.ndarray, t: np.ndarray, place: np.ndarray, todo: np.ndarray, leaving: np.ndarray) -> None:
        """Raise :class:`AllocationError` unless the explicit placements ``place`` of the slots in
        ``todo`` match their allocation and fit once the jobs in ``leaving`` have left."""
        e, s = np.nonzero(todo)
        if len(e) == 0:
            return
        rows = place[e, s]
        bad = rows.sum(axis=1) != n[e, s]
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise AllocationError(f"env {e[i]}, slot {s[i]}: placement holds {rows[i].sum()} GPUs, allocation says {n[e[i], s[i]]}")
        wrong = ((rows > 0) & (self.node_type[None, :] != t[e, s][:, None])).any(axis=1) | (rows < 0).any(axis=1)
        if wrong.any():
            i = int(np.flatnonzero(wrong)[0])
            raise AllocationError(f"env {e[i]}, slot {s[i]}: placement uses nodes that are not of its GPU type {self.gpu_types[t[e[i], s[i]]]!r}")
        avail = self.free.copy()
        le, ls = np.nonzero(leaving & ~self.s_guest)
        np.add.at(avail, le, self.s_place[le, ls])
        need = np.zeros_like(avail)
        np.add.at(need, e, rows)
        over = need > avail
        if over.any():
            ee, node = np.argwhere(over)[0]
            raise AllocationError(f"env {ee}: placements take {need[ee, node]} GPUs of node {node}, which has {avail[ee, node]} free")

    def _place_in_order(self, todo: np.ndarray, n: np.ndarray, t: np.ndarray, *, place: np.ndarray | None = None,
                        share: np.ndarray | None = None) -> None:
        for e, s in self._ranks(todo):
            self.start(e, s, t[e, s], n[e, s], take=None if place is None else place[e, s],
                       share=None if share is None else share[e, s])

    # ------------------------------------------------------------------ the gang allocator
    def greedy(
        self,
        scores: np.ndarray,
        *,
        backfill: bool = True,
        preempt: bool = False,
        envs: np.ndarray | None = None,
        start_now: bool = False,
    ) -> tuple[np.ndarray, np.ndarray]:
        """The shared gang allocator: serve jobs in decreasing ``scores`` (``(E, S)``; ``-inf``
        or NaN = not a candidate), each on its requested GPU count.

        Without ``preempt``, running jobs keep their GPUs and waiting jobs fill the free ones;
        with it, running jobs compete too (a running job that is served keeps its GPU type when
        it can, so :meth:`apply` leaves it in place). ``backfill=False`` stops an env at the
        first job that does not fit (strict head-of-line, as YARN-CS FIFO). A job goes to its
        current type if running, else to the fastest type for its model with room. Ties break
        on workload order. Returns the allocation ``(n, t)`` for :meth:`apply`; with
        ``start_now`` (only without ``preempt``) each served job is also started at once, in
        score order, so nothing is left for :meth:`apply` to do.
        """
        from envs.lowering import serve_in_order  # the gang allocator shared with the policies

        if start_now and preempt:
            raise ValueError("start_now is for non-preemptive serving")
        E = self.E
        envs = np.ones(E, dtype=bool) if envs is None else np.asarray(envs, dtype=bool)
        scores = np.where(np.isnan(scores), -INF, scores)
        run = self.s_status == RUNNING
        if preempt:
            cand = (self.s_status != EMPTY) & envs[:, None]
            cap = np.tile(self.capacity, (E, 1))
            n_new = np.where(envs[:, None], 0, self.s_n)
        else:
            cand = (self.s_status == WAITING) & envs[:, None]
            cap = self.free_per_type()
            n_new = self.s_n.copy()
        t_new = self.s_t.copy()
        cand &= scores > -INF
        if not cand.any():
            return n_new, t_new
        prefer = self.speed[self.s_model] if self.T > 1 else None
        keep = np.where(run, self.s_t, -1) if preempt else None
        n, t, _ = serve_in_order(scores, cand, self.s_gpus, cap, self.s_job, prefer, keep=keep,
                                 backfill=backfill, each=self.start if start_now else None)
        served = t >= 0
        return np.where(served, n, n_new), np.where(served, t, t_new)

    def serve(self, scores: np.ndarray, *, backfill: bool = True, preempt: np.ndarray | bool = False,
              envs: np.ndarray | None = None) -> None:
        """Serve jobs by priority (:meth:`greedy`) and carry it out: envs in the ``preempt`` mask
        re-decide their whole running set (:meth:`apply` keeps unchanged placements); the
        others start waiting jobs on free GPUs."""
        mask = np.ones(self.E, dtype=bool) if envs is None else np.asarray(envs, dtype=bool)
        preempt = np.broadcast_to(np.asarray(preempt, dtype=bool), (self.E,)) & mask
        if preempt.any():
            n, t = self.greedy(scores, backfill=backfill, preempt=True, envs=preempt)
            self.apply(n, t, preempt, check=False)
        rest = mask & ~preempt
        if rest.any():
            self.greedy(scores, backfill=backfill, envs=rest, start_now=True)
