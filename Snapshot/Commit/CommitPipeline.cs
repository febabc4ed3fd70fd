using System.Diagnostics;
using System.Runtime.CompilerServices;
using Snapshot.Sync;
using Journal.Storage;
using Snapshot.Exceptions;

namespace Snapshot.Commit;

/// <summary>
/// The store-wide commit pipeline: every exception whose copy is written, of every snapshot, is committed by rounds
/// of this one pipeline (not by one round per COW file).
/// </summary>
/// <remarks>
/// <para>A <b>round</b> takes every exception queued since the previous round and:</para>
/// <list type="number">
/// <item>makes the copies of each COW file in the round durable, all files at once, with one device flush for all the
/// files on one ext4 file system where it can (see <see cref="FlushCowFilesAsync"/>): the data is durable before any
/// metadata can point at it;</item>
/// <item>commits every file's exceptions through the <see cref="IMetadataCommitter"/> (the journal: one transaction,
/// split only when it would not fit the log, then one log force);</item>
/// <item>completes the exceptions once the commit is durable.</item>
/// </list>
/// <para><b>Rounds overlap</b>: step 3 waits in the background, so while round N's log force is in flight, round N+1
/// gathers exceptions and flushes its COW data. Steps 1 and 2 run for one round at a time, in round order, so the
/// commit order is the journal's sequence order, and a durable round implies every earlier one is. At most
/// <see cref="MaxRoundsWaiting"/> rounds wait for durability at once.</para>
/// <para><b>One flush a round</b> (journal mode, when the COW files and the log share the storage device's flushes,
/// <see cref="BlockDevice.CanFlushThrough"/>): the pump holds a committed round instead of asking for its force at
/// once. When the next round is taken, its COW data is written back (every file's write-back started, then each
/// waited for), the pump reads the log device's <see cref="BlockDevice.FlushesBegun"/>, asks for the held round's force
/// and waits for it. When <see cref="BlockDevice.HasCarriedSince"/> then says a flush numbered later has completed,
/// that one flush made both the held round's checkpoint and the new round's copies durable, and the new round skips
/// step 1's flush (it is <i>carried</i>). Otherwise (another force had already flushed the held round) the new round
/// flushes its own data as above. Either way the copies are durable before the round's metadata is committed, and the
/// held round completes (on the pump, when the completer has nothing earlier) once its force returns. With no next
/// round queued, a held round's force is asked for at once. Where the files cannot ride (another file system, a file
/// that grew), nothing is held and rounds run as before. This halves the device flushes a round costs (0.38 to 0.20-0.22
/// a write in <c>journal-bench cow</c>), at the price of serialising the held round's force after the next round's
/// write-back.</para>
/// <para>Locking: <c>_lock</c> (a leaf monitor) protects the queues, the stop flag, the round pool, the free durability slots, the count of rounds handed to the completer and the statistics;
/// held for a few instructions, never across an await, and nothing is taken under it. Two loops live as long as the
/// pipeline: the pump (steps 1 and 2, one round at a time) and the completer (step 3, rounds in order). Waits and why:
/// the pump waits for work, for the runs announced before it took a round of the requests the round holds copies of (<see cref="Expect"/>: each
/// arrives once its copies are queued or before it waits for anything a round provides, so this wait needs nothing the
/// pump holds back), for a free durability slot (the oldest waiting round completes; it holds nothing anyone else
/// needs; a held round's force is asked for before the pump waits for a slot, so every round holding one has had its
/// force asked for, and one frees), for a held round's force (its flush depends on nothing the pump holds), for the COW flushes (blocking its own thread for the write-backs and the carrier's flush, a lone file's
/// flush, or the riders' own flushes when the carrier did not carry, holding nothing) and for the commit (which takes the journal's log space and the segment locks, see
/// <see cref="JournalCommitter"/>); the completer waits for a committed round and for its force. Nothing in here ever enters the store's I/O
/// gate or takes its state lock, so a writer that holds the gate while it waits for its exceptions cannot block a
/// round.</para>
/// </remarks>
internal sealed class CommitPipeline
{
    /// <summary>Most rounds waiting for durability at once (log forces in flight).</summary>
    /// <remarks>
    /// Two: one round's force in flight while the next one flushes its COW data, and a third gathering. More rounds in
    /// flight split the same writers into smaller rounds (each costing a COW flush and a log force) for no gain.
    /// </remarks>
    public const int MaxRoundsWaiting = 2;

    private readonly IMetadataCommitter _committer;
    private readonly object _lock = new();
    private CommitRound _collecting = new();
    private readonly Queue<(CommitRound Round, ValueTask Durable, Exception? Error)> _waiting = new();
    private readonly Stack<CommitRound> _free = new();
    private readonly AsyncAutoSignal _work = new();      // the pump's: exceptions were queued (or stop)
    private readonly AsyncAutoSignal _committed = new(); // the completer's: a round was committed (or stop)
    private readonly AsyncAutoSignal _slotFreed = new(); // the pump's: a round completed and gave back its slot
    private int _freeSlots = MaxRoundsWaiting;           // durability slots not taken (under _lock)
    private readonly Task _pump, _completer;
    private bool _stopping;
    private long _nextRound;
    private ValueTask[] _flushes = new ValueTask[8]; // the pump's own (step 1 runs for one round at a time)
    private bool[] _rides = new bool[8];             // the pump's own: which files of the round are written back, not flushed

    // Statistics (under _lock).
    private long _rounds, _exceptions, _cowFlushes, _cowWriteBacks, _largest, _roundTicks, _failedRounds, _flushTicks, _commitTicks, _carriedRounds;
    private int _queuedToCompleter; // rounds handed to the completer and not yet completed (under _lock)

    // Runs the pump waits for (Expect): the sum of Waited over the plugs of the round it is about to take, under _lock.
    private int _waitingForRuns;
    private readonly AsyncAutoSignal _arrived = new(); // the pump's: the last run it waits for arrived
    private long _expectWaits;                         // statistics: rounds that waited for expected runs (under _lock)

    public CommitPipeline(IMetadataCommitter committer)
    {
        _committer = committer;
        // Two long-running loops (one state machine each for the life of the pipeline, so a round allocates nothing
        // for them): the pump runs steps 1 and 2, the completer step 3, in round order.
        _pump = Task.Run(PumpLoopAsync);
        _completer = Task.Run(CompleterLoopAsync);
    }

    /// <summary>The committer the rounds use.</summary>
    public IMetadataCommitter Committer => _committer;

    /// <summary>
    /// Queues <paramref name="pe"/>, whose data is written to its COW file, for the next round; completion is signalled
    /// on the exception (<see cref="PendingException.CommitTask"/>). Never waits.
    /// </summary>
    public void Enqueue(PendingException pe)
    {
        lock (_lock)
        {
            AddLocked(pe);
            _collecting.UnitEnds.Add(_collecting.Items.Count);
        }
        _work.Set();
    }

    /// <summary>
    /// Queues every exception of <paramref name="items"/> marked <see cref="PendingException.Queued"/>, all into the same
    /// round and one unit (one copy's exceptions, one per snapshot, are committed together or not at all: a round is one
    /// journal transaction unless it does not fit the log, and then it is cut between units). Never waits. The run that
    /// copied them arrives here (<paramref name="run"/>, when it was announced), under the same lock: a round that takes
    /// these copies waits for the request's other runs.
    /// </summary>
    public void EnqueueMarked(List<PendingException> items, RunTicket run = default)
    {
        bool any = false, wake;
        lock (_lock)
        {
            foreach (var pe in items)
            {
                if (!pe.Queued) continue;
                AddLocked(pe);
                any = true;
            }
            if (any)
            {
                _collecting.UnitEnds.Add(_collecting.Items.Count);
                var plug = run.Plug;
                if (plug is not null && plug.Round != _nextRound)
                {
                    plug.Round = _nextRound;
                    _collecting.Plugs.Add(plug);
                }
            }
            wake = ArrivedLocked(run);
        }
        if (any) _work.Set();
        if (wake) _arrived.Set();
    }

    /// <summary>Runs the pump is waiting for now (0 when it is not waiting for runs). For tests.</summary>
    internal int RunsWaitedFor
    {
        get { lock (_lock) return _waitingForRuns; }
    }

    /// <summary>
    /// Begins an origin write cut into several runs copied in parallel; each run is then announced with
    /// <see cref="Expect"/> before it starts. Like a block layer's plug: a round that holds copies of the request waits
    /// for its runs announced so far and takes all their copies, one round for the request instead of one per run as
    /// they arrive. A round that holds none of the request's copies does not wait for it.
    /// </summary>
    public RequestPlug BeginRequest() => new();

    /// <summary>
    /// Announces a run of <paramref name="plug"/>'s request whose copies are about to be queued. The ticket must reach
    /// the pipeline exactly once: with the run's copies (<see cref="EnqueueMarked"/>), or through <see cref="Arrived"/>
    /// before the run waits for anything or gives up.
    /// </summary>
    /// <remarks>
    /// The pump waits only for runs announced before it started waiting, so a stream of new runs cannot hold a round
    /// back for longer than the runs already under way take to copy. A run must not wait for anything a round provides
    /// (throttle room, another writer's exception, the I/O gate) before it has arrived: the pump may wait for it.
    /// </remarks>
    public RunTicket Expect(RequestPlug plug)
    {
        lock (_lock)
        {
            plug.Announced++;
            return new RunTicket(plug, plug.Epoch);
        }
    }

    /// <summary>An announced run (<paramref name="run"/>, its ticket) will not queue copies, or has queued them elsewhere.</summary>
    public void Arrived(RunTicket run)
    {
        if (!run.Pending) return;
        bool wake;
        lock (_lock) wake = ArrivedLocked(run);
        if (wake) _arrived.Set();
    }

    /// <summary>Counts <paramref name="run"/> as arrived; true when it was the last run the pump waits for. Under <c>_lock</c>.</summary>
    private bool ArrivedLocked(RunTicket run)
    {
        var plug = run.Plug;
        if (plug is null) return false;
        if (run.Epoch < plug.Epoch)
        {
            plug.Waited--;
            return --_waitingForRuns == 0;
        }
        plug.Announced--;
        return false;
    }

    /// <summary>
    /// Before <paramref name="round"/> is taken: the runs it waits for, those announced so far by the requests it holds
    /// copies of. True when there are any (the pump then waits until <c>_waitingForRuns</c> is 0). Under <c>_lock</c>.
    /// </summary>
    private bool WaitForRunsLocked(CommitRound round)
    {
        Debug.Assert(_waitingForRuns == 0, "the pump waits for one round's runs at a time");
        foreach (var plug in round.Plugs)
        {
            if (plug.Announced == 0) continue;
            Debug.Assert(plug.Waited == 0);
            plug.Waited = plug.Announced;
            plug.Announced = 0;
            plug.Epoch++;
            _waitingForRuns += plug.Waited;
        }
        return _waitingForRuns > 0;
    }

    /// <summary>Adds <paramref name="pe"/> to the round being gathered. Under <c>_lock</c>.</summary>
    private void AddLocked(PendingException pe)
    {
        if (_stopping) throw new InvalidOperationException("the commit pipeline is stopped");
        if (_collecting.Items.Count == 0) _collecting.FirstQueuedTicks = Stopwatch.GetTimestamp();
        _collecting.Items.Add(pe);
    }

    /// <summary>
    /// Stops both loops once every queued exception is completed. Every queued exception's writer waits for its
    /// completion before it leaves the store's I/O gate, so once the gate is held exclusively nothing is queued.
    /// </summary>
    public async Task StopAsync()
    {
        lock (_lock) _stopping = true;
        _work.Set();
        await _pump.ConfigureAwait(false);
        _committed.Set();
        await _completer.ConfigureAwait(false);
    }

    private async Task PumpLoopAsync()
    {
        // The round committed last whose force is not asked for yet: the next round's COW data is written back first,
        // so that the force's flush carries it (see "One flush a round"). Only the pump touches these.
        CommitRound? held = null;
        ulong heldTicket = 0;
        bool waitedForRuns = false; // the round about to be taken has waited for expected runs once: it waits no more
        while (true)
        {
            CommitRound round;
            bool empty, expecting = false;
            lock (_lock)
            {
                empty = _collecting.Items.Count == 0;
                if (empty && _stopping && held is null) return;
                round = _collecting;
                if (!empty && !waitedForRuns && WaitForRunsLocked(round))
                {
                    // Runs of requests this round holds copies of will queue theirs soon: it waits for those announced so far.
                    _expectWaits++;
                    expecting = true;
                }
                else if (!empty)
                {
                    _collecting = _free.Count > 0 ? _free.Pop() : new CommitRound();
                    round.Number = ++_nextRound;
                    waitedForRuns = false;
                }
            }
            if (expecting)
            {
                // Why we wait: for the runs announced before now, of requests this round holds copies of, to queue theirs
                // (Expect). Each arrives once its copies are written, or before it waits for anything itself, so this
                // wait needs nothing the pump holds back. A held round's force waits with it: the round taken next rides
                // it all the same.
                while (true)
                {
                    lock (_lock)
                        if (_waitingForRuns == 0) break;
                    await _arrived.WaitAsync().ConfigureAwait(false);
                }
                waitedForRuns = true;
                continue;
            }
            if (empty)
            {
                if (held is not null)
                {
                    // No round to carry: the held round's force goes out now.
                    ForceAndQueue(held, heldTicket, null);
                    held = null;
                    continue;
                }
                // Why we wait: for exceptions to commit. Nothing is held.
                await _work.WaitAsync().ConfigureAwait(false);
                continue;
            }
            // Why we wait: at most MaxRoundsWaiting rounds wait for durability; the oldest frees a slot when its force
            // completes. The pump holds nothing another thread needs meanwhile: a held round's force is asked for
            // before the wait, so every round holding a slot has had its force asked for, and one always frees. (A
            // counter and the pump's own signal, not a semaphore: a semaphore's asynchronous wait allocates a node each
            // time it waits.)
            if (!TryTakeSlot())
            {
                // A held round would wait through the slot wait for nothing: its force goes out now.
                if (held is not null)
                {
                    ForceAndQueue(held, heldTicket, null);
                    held = null;
                }
                while (!TryTakeSlot()) await _slotFreed.WaitAsync().ConfigureAwait(false);
            }
            ulong ticket = 0;
            Exception? commitError = null;
            try
            {
                round.GroupByFile();
                long t0 = Stopwatch.GetTimestamp();
                bool carried = false;
                if (held is not null)
                {
                    var previous = held;
                    held = null;
                    carried = await CarryAsync(round, previous, heldTicket).ConfigureAwait(false);
                }
                if (!carried) await FlushCowFilesAsync(round).ConfigureAwait(false);
                long t1 = Stopwatch.GetTimestamp();
                if (round.CommittableCount > 0) ticket = await _committer.CommitAsync(round, CancellationToken.None).ConfigureAwait(false);
                long t2 = Stopwatch.GetTimestamp();
                lock (_lock)
                {
                    _flushTicks += t1 - t0;
                    _commitTicks += t2 - t1;
                }
            }
            catch (Exception e)
            {
                commitError = e;
            }
            if (held is not null)
            {
                // Not carried (the round failed before it got that far): forced first, so rounds stay in order.
                ForceAndQueue(held, heldTicket, null);
                held = null;
            }
            if (commitError is null && ticket != 0 && _committer.FlushCarrier is { } carrier && CanRide(round, carrier))
            {
                // Held until the next round is written back (or there is none): its force then carries that data. Held
                // only where the store's files can ride the log's flush (this round's files stand for the next's).
                held = round;
                heldTicket = ticket;
                AfterHoldForTests?.Invoke();
                continue;
            }
            ForceAndQueue(round, ticket, commitError);
        }
    }

    /// <summary>
    /// Asks for the force of <paramref name="round"/> (committed with <paramref name="ticket"/>, 0 when nothing was
    /// committed or <paramref name="error"/> is set) and hands the round to the completer, which waits for the force
    /// in the background (the pump's).
    /// </summary>
    private void ForceAndQueue(CommitRound round, ulong ticket, Exception? error)
    {
        // The force is asked for here, on the pump: the push starts writing the checkpoint while the completer is still
        // being woken (it only waits for the result).
        ValueTask durable = default;
        if (error is null && ticket != 0)
        {
            try { durable = _committer.WaitDurableAsync(ticket, CancellationToken.None); }
            catch (Exception e) { error = e; }
        }
        lock (_lock)
        {
            _waiting.Enqueue((round, durable, error));
            _queuedToCompleter++;
        }
        _committed.Set();
    }

    /// <summary>
    /// Writes back <paramref name="round"/>'s COW data, then forces <paramref name="held"/> (committed with
    /// <paramref name="ticket"/>) and completes it: true when the force's flush carried the written-back data, which
    /// is then durable. When a file of the round cannot ride the carrier's flush, only the force is asked for (the
    /// completer waits for it while the round flushes its own data) and the result is false. Never throws: a failed
    /// write-back fails its group, a failed force fails <paramref name="held"/>.
    /// </summary>
    /// <remarks>
    /// The one device flush serves two rounds: it makes <paramref name="held"/>'s checkpoint durable, and the data of
    /// <paramref name="round"/>, whose write-backs completed before the flush began. <paramref name="round"/>'s
    /// metadata is committed only after that, so its data is still durable before any metadata points at it.
    /// Whether the flush that made the log durable began after the write-backs is read from the carrier
    /// (<see cref="BlockDevice.HasCarriedSince"/>): when another force flushed the log earlier, nothing new was
    /// flushed, and the round flushes its data itself.
    /// </remarks>
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder<>))]
    private async ValueTask<bool> CarryAsync(CommitRound round, CommitRound held, ulong ticket)
    {
        BlockDevice? carrier = _committer.FlushCarrier;
        if (carrier is null || !CanRide(round, carrier))
        {
            ForceAndQueue(held, ticket, null);
            return false;
        }
        // The round's data is written back first (every file's write-back started, then each waited for), then the
        // held round's force is asked for: a log flush that begins after that carries the data. Reading FlushesBegun
        // between the two tells whether the flush that made the held round durable is such a flush; when another
        // force had already flushed the log, nothing new is flushed, and the round flushes its data itself. (Asking
        // for the force before waiting for the write-backs overlapped the checkpoint's write with them, but the log's
        // flush then often began first: in journal-bench cow, 0.30-0.32 COW flushes a round with 8 files and 0.09-0.13
        // with one, against 0.10-0.12 and 0.04-0.08 this way, at the same write rate or better.)
        for (int i = 0; i < round.GroupCount; i++)
        {
            try { round.Groups[i].Store.Cow.StartWriteBack(); }
            catch (Exception e) { round.Groups[i].Error = e; }
        }
        for (int i = 0; i < round.GroupCount; i++)
        {
            if (round.Groups[i].Error is not null) continue;
            try { round.Groups[i].Store.Cow.WriteBack(); }
            catch (Exception e) { round.Groups[i].Error = e; }
        }
        long begun = 0;
        bool counted = false;
        try
        {
            // Read only now that every write-back has returned (see BlockDevice.HasCarriedSince).
            begun = carrier.FlushesBegun;
            counted = true;
        }
        catch (Exception)
        {
            // The device cannot say: the round flushes its own data (its own flush reports the device's failure).
        }
        Exception? error = null;
        try
        {
            // Why we wait: the held round's force. The pump has nothing else to do: this round's data is durable only
            // once a flush that began after its write-backs is done.
            await _committer.WaitDurableAsync(ticket, CancellationToken.None).ConfigureAwait(false);
        }
        catch (Exception e)
        {
            error = e;
        }
        bool carried = false;
        if (error is null && counted)
        {
            try { carried = carrier.HasCarriedSince(begun); }
            catch (Exception) { } // not carried: the round flushes its own data, as above
        }
        bool inline;
        lock (_lock)
        {
            // Completed here, without waking the completer, unless it still has earlier rounds (rounds complete in order).
            inline = _queuedToCompleter == 0;
            if (!inline)
            {
                _waiting.Enqueue((held, default, error));
                _queuedToCompleter++;
            }
            if (carried)
            {
                _carriedRounds++;
                _cowWriteBacks += round.GroupCount;
            }
        }
        if (inline) Complete(held, error);
        else _committed.Set();
        return carried;
    }

    /// <summary>
    /// True when the flush of <paramref name="carrier"/> (the log's device) can carry every COW file of
    /// <paramref name="round"/>: the carrier qualifies itself, and each file can ride it (same file system, fully
    /// written, not grown since its own last flush).
    /// </summary>
    private static bool CanRide(CommitRound round, BlockDevice carrier)
    {
        if (!carrier.CanFlushThrough(carrier)) return false;
        for (int i = 0; i < round.GroupCount; i++)
            if (!round.Groups[i].Store.Cow.CanFlushThrough(carrier)) return false;
        return true;
    }

    /// <summary>
    /// Tests only: run on the pump once a committed round is held for the next one to ride its force (for instance to
    /// wait a little for the next round, so that the carried path runs). Nothing is locked; a wait here delays the
    /// held round's force.
    /// </summary>
    internal Action? AfterHoldForTests;

    /// <summary>Exceptions queued for the next round.</summary>
    internal int QueuedCount
    {
        get { lock (_lock) return _collecting.Items.Count; }
    }

    /// <summary>Takes a durability slot if one is free (the pump's).</summary>
    private bool TryTakeSlot()
    {
        lock (_lock)
        {
            if (_freeSlots == 0) return false;
            _freeSlots--;
            return true;
        }
    }

    private async Task CompleterLoopAsync()
    {
        while (true)
        {
            CommitRound round;
            ValueTask durable;
            Exception? error;
            lock (_lock)
            {
                if (!_waiting.TryDequeue(out var next))
                {
                    if (_stopping && _pump.IsCompleted) return;
                    round = null!;
                    durable = default;
                    error = null;
                }
                else
                {
                    (round, durable, error) = next;
                }
            }
            if (round is null)
            {
                // Why we wait: for a committed round to wait on. Nothing is held.
                await _committed.WaitAsync().ConfigureAwait(false);
                continue;
            }
            try
            {
                // Why we wait: the round's log force (the journal shares it with concurrent forces). Rounds complete in
                // order, and a later round's force covers every earlier one.
                await durable.ConfigureAwait(false);
            }
            catch (Exception e)
            {
                error = e;
            }
            Complete(round, error);
            lock (_lock) _queuedToCompleter--;
        }
    }

    /// <summary>
    /// Step 1: makes every COW file's copies in the round durable; a file whose flush fails fails its group.
    /// </summary>
    /// <remarks>
    /// With several files, the first one that could ride itself (it qualifies on its own: same rules) is the
    /// <b>carrier</b>: every later file that <see cref="BlockDevice.CanFlushThrough"/> it (for files,
    /// <see cref="FileBlockDevice"/>: same ext4 file system, fully written, not grown since its own last flush)
    /// <b>rides</b>: its copies are written back to the device (sync_file_range, started for every
    /// file before any is waited for, so they are written in parallel), and then the carrier's one fdatasync flushes
    /// the device's cache for all of them. So a round costs one device flush for its COW data however many snapshots it
    /// copied for, not one per file. Files that cannot ride are flushed by their own fdatasync, all at once on the
    /// thread pool, as before.
    /// <para>The write-backs and the carrier's flush (and a lone file's flush) run on the pump's own thread, blocking it:
    /// the pump has nothing else to do until they are done, and a hop to another thread and back per file cost more than
    /// the write-back itself (step 1 took 771 µs a round with eight files when each write-back was a work item).</para>
    /// </remarks>
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    private async ValueTask FlushCowFilesAsync(CommitRound round)
    {
        int n = round.GroupCount;
        if (n == 1)
        {
            var g = round.Groups[0];
            try { g.Store.Cow.Flush(); }
            catch (Exception e) { g.Error = e; }
            lock (_lock) _cowFlushes++;
            return;
        }
        if (_flushes.Length < n)
        {
            _flushes = new ValueTask[Math.Max(n, _flushes.Length * 2)];
            _rides = new bool[_flushes.Length];
        }
        int carrierIndex = -1, riders = 0, own = 0;
        BlockDevice? carrier = null;
        for (int i = 0; i < n; i++)
        {
            _rides[i] = false;
            BlockDevice f = round.Groups[i].Store.Cow;
            // The carrier qualifies itself: with nothing of its own for the file system's journal to commit, its
            // fdatasync flushes the device directly.
            if (carrier is null) { if (f.CanFlushThrough(f)) { carrier = f; carrierIndex = i; } }
            else if (f.CanFlushThrough(carrier)) { _rides[i] = true; riders++; }
        }
        if (riders > 0) _rides[carrierIndex] = true; // written back with the riders, then flushed for them all
        // The files that cannot ride: their own flushes, started together on the thread pool.
        for (int i = 0; i < n; i++)
        {
            _flushes[i] = default;
            if (_rides[i]) continue;
            own++;
            try { _flushes[i] = round.Groups[i].Store.Cow.FlushAsync(CancellationToken.None); }
            catch (Exception e) { _flushes[i] = ValueTask.FromException(e); }
        }
        int carrierFlushes = riders > 0 ? 1 : 0;
        if (riders > 0)
        {
            for (int i = 0; i < n; i++)
            {
                if (!_rides[i]) continue;
                try { round.Groups[i].Store.Cow.StartWriteBack(); }
                catch (Exception e) { round.Groups[i].Error = e; }
            }
            for (int i = 0; i < n; i++)
            {
                if (!_rides[i] || round.Groups[i].Error is not null) continue;
                try { round.Groups[i].Store.Cow.WriteBack(); }
                catch (Exception e) { round.Groups[i].Error = e; }
            }
            // The one device flush: it starts after every write-back above completed, so it covers them all, provided
            // the carrier still qualifies as it begins (a writer may have grown it since it was chosen).
            bool carried = false;
            try { carried = carrier!.FlushAsCarrier(); }
            catch (Exception e)
            {
                for (int i = 0; i < n; i++)
                    if (_rides[i]) round.Groups[i].Error ??= e;
            }
            if (!carried)
            {
                // It did not carry: each rider is flushed on its own (its data is already on the device).
                for (int i = 0; i < n; i++)
                {
                    if (!_rides[i] || i == carrierIndex || round.Groups[i].Error is not null) continue;
                    try { round.Groups[i].Store.Cow.Flush(); }
                    catch (Exception e) { round.Groups[i].Error = e; }
                    own++;
                    riders--;
                }
            }
        }
        if (own > 0)
        {
            for (int i = 0; i < n; i++)
            {
                if (_rides[i]) continue;
                // Why we wait: the own flushes of the files that could not ride, started above.
                try { await _flushes[i].ConfigureAwait(false); }
                catch (Exception e) { round.Groups[i].Error = e; }
                finally { _flushes[i] = default; }
            }
        }
        lock (_lock)
        {
            _cowFlushes += own + carrierFlushes;
            _cowWriteBacks += riders;
        }
    }

    /// <summary>Step 3's end: counts the round, completes its exceptions, recycles it and frees its slot.</summary>
    /// <remarks>
    /// The round is counted before its exceptions complete, so a writer that sees its write done also sees the round in
    /// <see cref="Statistics"/> (and in the metrics read from them).
    /// </remarks>
    private void Complete(CommitRound round, Exception? error)
    {
        long now = Stopwatch.GetTimestamp();
        int count = round.Items.Count;
        lock (_lock)
        {
            _rounds++;
            _exceptions += count;
            if (count > _largest) _largest = count;
            _roundTicks += now - round.FirstQueuedTicks;
            if (error is not null) _failedRounds++;
        }
        for (int i = 0; i < round.GroupCount; i++)
        {
            var g = round.Groups[i];
            var groupError = g.Error ?? error;
            foreach (var pe in g.Items) pe.CompleteCommit(groupError);
        }
        lock (_lock)
        {
            round.Reset();
            if (_free.Count < MaxRoundsWaiting + 2) _free.Push(round);
            _freeSlots++;
        }
        _slotFreed.Set();
    }

    /// <summary>Counters since open.</summary>
    public CommitPipelineStatistics Statistics
    {
        get
        {
            lock (_lock)
                return new CommitPipelineStatistics(_committer.Name, _rounds, _exceptions, _cowFlushes, _committer.Transactions, _committer.DurabilityWaits, _largest,
                    TimeSpan.FromSeconds((double)_roundTicks / Stopwatch.Frequency), _failedRounds, _cowWriteBacks,
                    TimeSpan.FromSeconds((double)_flushTicks / Stopwatch.Frequency), TimeSpan.FromSeconds((double)_commitTicks / Stopwatch.Frequency), _carriedRounds, _expectWaits);
        }
    }

    /// <inheritdoc/>
    public override string ToString() => $"CommitPipeline({Statistics})";
}
