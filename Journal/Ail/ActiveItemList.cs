using System.Runtime.CompilerServices;
using Journal.Cil;
using Journal.Format;
using Journal.Log;
using Journal.Memory;
using Journal.Storage;

namespace Journal.Ail;

/// <summary>
/// The active item list (AIL): items whose latest checkpoint is durable but whose home copy is not yet written,
/// ordered by the LSN of that checkpoint's start record. Its oldest LSN is where the log tail must stay.
/// </summary>
/// <remarks>
/// <para><b>Insertion.</b> When a checkpoint is durable its items enter (or move to) the tail of the list at the
/// checkpoint's start LSN; checkpoints complete in sequence order and their start records are written in sequence
/// order, so the list stays sorted. Then the items are unpinned.</para>
/// <para><b>Write-back</b> (one batch at a time, serialised by <c>_writeBackGate</c>): collect up to a batch of
/// unpinned items at or below the target LSN (pinned ones are in a checkpoint not yet durable and must not be written
/// home: skipped), call <see cref="LogItem.WriteBackAsync"/> on each with its LSN, flush every distinct
/// <see cref="LogItem.HomeDevice"/> once, then remove the written items (only if they did not move meanwhile), drop
/// their shadow vectors (idle items hold no journal memory), and move the tail.</para>
/// <para><b>Tail.</b> The oldest LSN in the list; or, if a checkpoint is being written, no later than the log head
/// when it registered (its start record may not be passed); or, with nothing left, the log head.</para>
/// <para><b>When it runs.</b> A background worker pushes towards a target (a quarter of the log beyond the tail) when
/// the log is three quarters full or a reservation waits; <see cref="WriteBackAllAsync"/> writes everything eligible.
/// When only pinned items block the tail while space is short, the worker asks the CIL to push (the push makes them
/// durable and unpins them).</para>
/// <para><b>Locking.</b> <c>_lock</c> protects the list links, <see cref="LogItem.AilLsn"/>/<see cref="LogItem.InAil"/>,
/// the in-flight checkpoint list and the last tail; it is held for list walks and pointer updates only, and for the
/// tail update (the log's <see cref="ILogSink.MoveTail"/> is called under it, so tails move in order). Never awaited
/// under, never taken by the commit path.</para>
/// </remarks>
internal sealed class ActiveItemList
{
    private const int BatchSize = 256;
    private static readonly Lsn MaxLsn = new(uint.MaxValue, uint.MaxValue);

    private readonly object _lock = new();
    private readonly ILogSink _sink;
    private readonly CommittedItemList _cil;
    private readonly LogSpace _space;
    private readonly JournalCounters _counters;
    private LogItem? _head, _tail;
    private long _count;
    private readonly List<CilContext> _inFlight = new();
    private Lsn _lastTail;

    private readonly SemaphoreSlim _writeBackGate = new(1, 1);
    private readonly (LogItem? Item, Lsn Lsn)[] _batch = new (LogItem?, Lsn)[BatchSize];
    private readonly List<BlockDevice> _devices = new();
    private readonly AsyncSignal _signal = new(); // the worker's (WaitOneAsync)
    private Task _worker = Task.CompletedTask;
    private volatile bool _stopping;

    public ActiveItemList(ILogSink sink, CommittedItemList cil, LogSpace space, JournalCounters counters)
    {
        _sink = sink;
        _cil = cil;
        _space = space;
        _counters = counters;
        _lastTail = sink.Tail;
    }

    /// <summary>Items in the list.</summary>
    public long Count => Interlocked.Read(ref _count);

    /// <summary>The oldest LSN in the list, or <see cref="Lsn.Zero"/> when empty.</summary>
    public Lsn OldestLsn { get { lock (_lock) return _head?.AilLsn ?? Lsn.Zero; } }

    public void Start() => _worker = Task.Run(WorkerAsync);

    /// <summary>A checkpoint is about to be written: the tail may not pass the head as of now.</summary>
    public void RegisterInFlight(CilContext ctx)
    {
        lock (_lock)
        {
            ctx.TailBound = _sink.Head;
            _inFlight.Add(ctx);
        }
    }

    /// <summary>A checkpoint is durable: its items enter the list at its start LSN, then are unpinned.</summary>
    public void InsertCheckpoint(CilContext ctx)
    {
        lock (_lock)
        {
            for (var v = ctx.Head; v is not null; v = v.Next) Move(v.Item!, ctx.StartLsn);
            _inFlight.Remove(ctx);
        }
        for (var v = ctx.Head; v is not null; v = v.Next) Interlocked.Decrement(ref v.Item!.PinCount);
    }

    /// <summary>Called after each checkpoint completes: starts write-back if log space is getting short.</summary>
    public void CheckpointCompleted()
    {
        _space.RefreshUsed();
        if (_space.HasWaiters || _space.Fullness > 0.75) RequestPush();
    }

    /// <summary>Wakes the background worker.</summary>
    public void RequestPush() => _signal.Set();

    private void Move(LogItem item, Lsn lsn)
    {
        if (item.InAil) Unlink(item);
        else _count++;
        item.AilLsn = lsn;
        item.InAil = true;
        // Sorted insert, searching from the tail (nearly always appends).
        var after = _tail;
        while (after is not null && after.AilLsn > lsn) after = after.AilPrev;
        item.AilPrev = after;
        item.AilNext = after is null ? _head : after.AilNext;
        if (item.AilNext is null) _tail = item; else item.AilNext.AilPrev = item;
        if (after is null) _head = item; else after.AilNext = item;
    }

    private void Unlink(LogItem item)
    {
        if (item.AilPrev is null) _head = item.AilNext; else item.AilPrev.AilNext = item.AilNext;
        if (item.AilNext is null) _tail = item.AilPrev; else item.AilNext.AilPrev = item.AilPrev;
        item.AilPrev = item.AilNext = null;
    }

    private async Task WorkerAsync()
    {
        while (true)
        {
            await _signal.WaitOneAsync().ConfigureAwait(false);
            if (_stopping) return;
            try
            {
                Lsn target = PushTarget();
                while (true)
                {
                    var r = await WriteBackBatchAsync(target, CancellationToken.None).ConfigureAwait(false);
                    if (r.Pinned && (_space.HasWaiters || r.Written == 0))
                    {
                        // Pinned items hold the tail: they are in a checkpoint not yet durable (or in the current
                        // context). Pushing the CIL makes them durable and unpins them.
                        var cur = _cil.Current;
                        if (!cur.IsEmpty) _cil.RequestPush(cur.Sequence);
                        else if (cur.Sequence > 1) _cil.RequestPush(cur.Sequence - 1);
                    }
                    if (r.Written == 0 || _stopping) break;
                }
            }
            catch (Exception e)
            {
                _cil.Shutdown(e as JournalException ?? new JournalException($"journal shut down: AIL write-back failed: {e.Message}", e));
                return;
            }
        }
    }

    /// <summary>A quarter of the log beyond the current tail (everything when reservations wait).</summary>
    private Lsn PushTarget()
    {
        if (_space.HasWaiters) return MaxLsn;
        Lsn tail;
        lock (_lock) tail = _head?.AilLsn ?? _lastTail;
        uint quarter = Math.Max(1, _sink.LogBlocks / 4);
        ulong block = (ulong)tail.Block + quarter;
        return block >= _sink.LogBlocks ? new Lsn(tail.Cycle + 1, (uint)(block - _sink.LogBlocks)) : new Lsn(tail.Cycle, (uint)block);
    }

    /// <summary>Writes home every item that is in the list and not pinned, then moves the tail. Returns items written.</summary>
    public async Task<long> WriteBackAllAsync(CancellationToken cancellationToken)
    {
        long total = 0;
        while (true)
        {
            var r = await WriteBackBatchAsync(MaxLsn, cancellationToken).ConfigureAwait(false);
            total += r.Written;
            if (r.Written == 0) break;
        }
        return total;
    }

    private readonly record struct BatchResult(int Written, bool Pinned);

    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder<>))]
    private async ValueTask<BatchResult> WriteBackBatchAsync(Lsn target, CancellationToken cancellationToken)
    {
        await _writeBackGate.WaitAsync(cancellationToken).ConfigureAwait(false);
        int n = 0, written = 0;
        bool pinned = false;
        try
        {
            lock (_lock)
            {
                for (var it = _head; it is not null && it.AilLsn <= target && n < BatchSize; it = it.AilNext)
                {
                    if (it.IsPinned) { pinned = true; continue; }
                    _batch[n++] = (it, it.AilLsn);
                }
            }

            _devices.Clear();
            for (int i = 0; i < n; i++)
            {
                var (item, lsn) = _batch[i];
                if (await item!.WriteBackAsync(lsn, cancellationToken).ConfigureAwait(false))
                {
                    written++;
                    var dev = item.HomeDevice;
                    if (dev is not null && !_devices.Contains(dev)) _devices.Add(dev);
                }
                else
                {
                    _batch[i].Item = null; // busy or pinned by now: stays in the list
                }
            }
            foreach (var dev in _devices)
            {
                await dev.FlushAsync(cancellationToken).ConfigureAwait(false);
                Interlocked.Increment(ref _counters.AilFlushes);
            }

            lock (_lock)
            {
                for (int i = 0; i < n; i++)
                {
                    var (item, lsn) = _batch[i];
                    if (item is null || !item.InAil || item.AilLsn != lsn) { _batch[i].Item = null; continue; }
                    Unlink(item);
                    item.InAil = false;
                    _count--;
                }
            }
            for (int i = 0; i < n; i++)
            {
                var item = _batch[i].Item;
                if (item is not null && !item.IsPinned)
                {
                    var shadow = Interlocked.Exchange(ref item.Shadow, null);
                    if (shadow is not null) _cil.ReleaseVector(shadow);
                }
            }
            Interlocked.Add(ref _counters.AilWriteBacks, written);
            UpdateTail();
            return new BatchResult(written, pinned);
        }
        finally
        {
            Array.Clear(_batch, 0, n);
            _writeBackGate.Release();
        }
    }

    /// <summary>Moves the log tail to the oldest LSN still needed.</summary>
    public void UpdateTail()
    {
        bool moved = false;
        lock (_lock)
        {
            Lsn t = _head?.AilLsn ?? MaxLsn;
            foreach (var c in _inFlight) if (c.TailBound < t) t = c.TailBound;
            if (t == MaxLsn) t = _sink.Head;
            if (t > _lastTail)
            {
                _lastTail = t;
                _sink.MoveTail(t);
                moved = true;
            }
        }
        if (moved)
        {
            Interlocked.Increment(ref _counters.TailMoves);
            _space.RefreshUsed();
            _space.Kick();
        }
    }

    public async Task StopAsync()
    {
        _stopping = true;
        _signal.Set();
        try { await _worker.ConfigureAwait(false); } catch { /* reported through Shutdown */ }
    }
}
