using Journal.Format;
using Journal.Log;

namespace Journal.Tests.Cil;

/// <summary>
/// An in-memory <see cref="ILogSink"/> that behaves like a circular log: ops are appended to an in-core buffer that
/// becomes a record (LSN = where it starts, length in 512-byte blocks, the tail at the time it was written) when it
/// fills or is forced; a force makes every submitted record durable with one "flush" (concurrent forces share it; an
/// already durable LSN costs nothing); writes wait while the log is full until the tail moves. <see cref="CrashImage"/>
/// keeps only durable records, and <see cref="Recover"/> reassembles complete transactions from the tail stamped in
/// the last durable record, in commit order, like the real recovery.
/// </summary>
public sealed class MemoryLogSink : ILogSink
{
    public const int RecordHeaderBytes = 64;
    public const int OpHeaderBytes = 16;

    private readonly object _lock = new();
    private readonly int _bufferSize;
    private readonly List<Record> _records = new();   // submitted, in LSN order
    private Record? _open;                             // the in-core buffer
    private long _head;                                // linear block position of the next record
    private long _tail;                                // linear block position of the tail
    private long _durable = -1;                        // linear position of the last durable record
    private uint _nextTid = 1;
    private TaskCompletionSource _tailMoved = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private Task? _flushInFlight;
    private long _flushTarget = -1;

    public MemoryLogSink(uint logBlocks, int bufferSize = 32 << 10, long startPosition = 0)
    {
        LogBlocks = logBlocks;
        _bufferSize = bufferSize;
        _head = _tail = startPosition == 0 ? logBlocks : startPosition; // cycle 1, block 0
    }

    /// <summary>Delay of each flush (lets concurrent forces pile up).</summary>
    public TimeSpan FlushDelay { get; set; }

    /// <summary>Delay of each WriteAsync (lets pushes overlap).</summary>
    public TimeSpan WriteDelay { get; set; }

    /// <summary>When set, WriteAsync and WriteCommitAsync wait for it (a stalled log).</summary>
    public Task? WriteGate { get; set; }

    /// <summary>When set, flushes wait for it (a slow device).</summary>
    public Task? FlushGate { get; set; }

    /// <summary>Called after every flush, under the log's lock, with the durable position (see <see cref="ImageAt"/>).</summary>
    public Action<long>? OnFlushed { get; set; }

    /// <summary>Called for every commit op written (tid, commit LSN), in the order written.</summary>
    public Action<uint, Lsn>? OnCommitWritten { get; set; }

    public long Flushes;
    public long RecordsWritten;
    public long BytesWritten;
    public long TailWaits;

    public uint LogBlocks { get; }

    private Lsn ToLsn(long pos) => new((uint)(pos / LogBlocks), (uint)(pos % LogBlocks));
    private long ToPos(Lsn lsn) => (long)lsn.Cycle * LogBlocks + lsn.Block;

    public Lsn Head { get { lock (_lock) return ToLsn(_open?.Position ?? _head); } }
    public Lsn Tail { get { lock (_lock) return ToLsn(_tail); } }
    public Lsn DurableLsn { get { lock (_lock) return _durable < 0 ? Lsn.Zero : ToLsn(_durable); } }
    public long UsedBytes { get { lock (_lock) return (_head - _tail + (_open is null ? 0 : Blocks(_open.Bytes))) * 512; } }

    private static long Blocks(long bytes) => (bytes + 511) / 512;

    public long GetReservationBytes(int regions, long payloadBytes)
    {
        long ops = regions + 2;
        long raw = ops * OpHeaderBytes + payloadBytes;
        long records = raw / (_bufferSize - RecordHeaderBytes) + 2;
        return raw + records * (RecordHeaderBytes + 511);
    }

    public uint AllocateTransactionId() { lock (_lock) return _nextTid++; }

    public async ValueTask<Lsn> WriteAsync(uint tid, IReadOnlyList<ReadOnlyMemory<byte>> regions, bool start, CancellationToken cancellationToken = default)
    {
        if (WriteDelay > TimeSpan.Zero) await Task.Delay(WriteDelay, cancellationToken);
        if (WriteGate is { } gate) await gate.WaitAsync(cancellationToken);
        var copies = new byte[regions.Count][];
        long bytes = 0;
        for (int i = 0; i < regions.Count; i++) { copies[i] = regions[i].ToArray(); bytes += OpHeaderBytes + copies[i].Length; }
        if (start) bytes += OpHeaderBytes;
        return await AppendAsync(new Op(tid, start ? OpKind.Start : OpKind.Regions, copies), bytes, cancellationToken);
    }

    public async ValueTask<Lsn> WriteCommitAsync(uint tid, CancellationToken cancellationToken = default)
    {
        if (WriteGate is { } gate) await gate.WaitAsync(cancellationToken);
        return await AppendAsync(new Op(tid, OpKind.Commit, []), OpHeaderBytes, cancellationToken);
    }

    private async ValueTask<Lsn> AppendAsync(Op op, long bytes, CancellationToken cancellationToken)
    {
        while (true)
        {
            Task wait;
            lock (_lock)
            {
                long openBlocks = _open is null ? Blocks(RecordHeaderBytes) : Blocks(_open.Bytes);
                long after = _head + Blocks((_open?.Bytes ?? RecordHeaderBytes) + bytes);
                if (after - _tail <= LogBlocks)
                {
                    _open ??= new Record(_head, RecordHeaderBytes);
                    _open.Ops.Add(op);
                    _open.Bytes += bytes;
                    var lsn = ToLsn(_open.Position);
                    if (op.Kind == OpKind.Commit) OnCommitWritten?.Invoke(op.Tid, lsn);
                    if (_open.Bytes >= _bufferSize) SubmitLocked();
                    return lsn;
                }
                if (_open is not null) SubmitLocked(); // make room accounting exact, then wait
                wait = _tailMoved.Task;
                TailWaits++;
            }
            await wait.WaitAsync(cancellationToken);
        }
    }

    private void SubmitLocked()
    {
        var r = _open!;
        _open = null;
        r.Tail = _tail;
        r.Blocks = Blocks(r.Bytes);
        _records.Add(r);
        _head += r.Blocks;
        RecordsWritten++;
        BytesWritten += r.Blocks * 512;
    }

    public async ValueTask ForceAsync(Lsn lsn, CancellationToken cancellationToken = default)
    {
        long pos = ToPos(lsn);
        while (true)
        {
            Task flush;
            lock (_lock)
            {
                if (pos <= _durable) return;
                if (_open is not null && _open.Position <= pos) SubmitLocked();
                if (_flushInFlight is not null && _flushTarget >= pos) flush = _flushInFlight;
                else if (_flushInFlight is not null) flush = _flushInFlight; // wait for it, then flush again
                else
                {
                    _flushTarget = _records.Count == 0 ? -1 : _records[^1].Position;
                    _flushInFlight = flush = FlushAsync(_flushTarget);
                }
            }
            await flush.WaitAsync(cancellationToken);
        }
    }

    private async Task FlushAsync(long target)
    {
        if (FlushDelay > TimeSpan.Zero) await Task.Delay(FlushDelay);
        else await Task.Yield();
        if (FlushGate is { } gate) await gate;
        lock (_lock)
        {
            Interlocked.Increment(ref Flushes);
            if (target > _durable) _durable = target;
            _flushInFlight = null;
            OnFlushed?.Invoke(_durable);
        }
    }

    public void MoveTail(Lsn tail)
    {
        TaskCompletionSource moved;
        lock (_lock)
        {
            long pos = ToPos(tail);
            if (pos <= _tail) return;
            if (pos > (_open?.Position ?? _head)) throw new InvalidOperationException($"tail {tail} beyond head {ToLsn(_head)}");
            _tail = pos;
            moved = _tailMoved;
            _tailMoved = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        }
        moved.TrySetResult();
    }

    public Task WaitForTailMoveAsync(CancellationToken cancellationToken = default)
    {
        lock (_lock) return _tailMoved.Task.WaitAsync(cancellationToken);
    }

    /// <summary>Number of submitted records whose LSN is before the tail (would be reclaimable).</summary>
    public int RecordCount { get { lock (_lock) return _records.Count; } }

    /// <summary>The durable records only, as a crash would leave them.</summary>
    public CrashImage Crash()
    {
        lock (_lock) return new CrashImage(LogBlocks, _bufferSize, _records.Where(r => r.Position <= _durable).ToList());
    }

    /// <summary>The crash image as of a flush that made <paramref name="durablePosition"/> durable.</summary>
    public CrashImage ImageAt(long durablePosition)
    {
        lock (_lock) return new CrashImage(LogBlocks, _bufferSize, _records.Where(r => r.Position <= durablePosition).ToList());
    }

    /// <summary>Every record submitted so far treated as durable (a clean state to recover from).</summary>
    public CrashImage Snapshot()
    {
        lock (_lock)
        {
            if (_open is not null) SubmitLocked();
            return new CrashImage(LogBlocks, _bufferSize, _records.ToList());
        }
    }

    internal enum OpKind { Start, Regions, Commit }
    internal sealed record Op(uint Tid, OpKind Kind, byte[][] Regions);

    internal sealed class Record(long position, long bytes)
    {
        public readonly long Position = position;
        public long Bytes = bytes;
        public long Blocks;
        public long Tail;
        public readonly List<Op> Ops = new();
    }

    /// <summary>What a crash leaves: durable records. Recover from it, or open a new log after it.</summary>
    public sealed class CrashImage
    {
        private readonly uint _logBlocks;
        private readonly int _bufferSize;
        internal readonly List<Record> Records;

        internal CrashImage(uint logBlocks, int bufferSize, List<Record> records)
        {
            _logBlocks = logBlocks;
            _bufferSize = bufferSize;
            Records = records;
        }

        /// <summary>Delivers complete transactions (start LSN, regions) from the stamped tail, in commit order.</summary>
        public void Recover(Action<Lsn, IReadOnlyList<ReadOnlyMemory<byte>>> deliver)
        {
            if (Records.Count == 0) return;
            long tail = Records[^1].Tail;
            var open = new Dictionary<uint, (Lsn Start, List<ReadOnlyMemory<byte>> Regions)>();
            foreach (var r in Records)
            {
                if (r.Position < tail) continue;
                var lsn = new Lsn((uint)(r.Position / _logBlocks), (uint)(r.Position % _logBlocks));
                foreach (var op in r.Ops)
                {
                    switch (op.Kind)
                    {
                        case OpKind.Start:
                            open[op.Tid] = (lsn, op.Regions.Select(b => (ReadOnlyMemory<byte>)b).ToList());
                            break;
                        case OpKind.Regions:
                            if (open.TryGetValue(op.Tid, out var t)) t.Regions.AddRange(op.Regions.Select(b => (ReadOnlyMemory<byte>)b));
                            break;
                        case OpKind.Commit:
                            if (open.Remove(op.Tid, out var c)) deliver(c.Start, c.Regions);
                            break;
                    }
                }
            }
        }

        /// <summary>A log that continues after this image (recovery done, everything replayed is home).</summary>
        public MemoryLogSink OpenAfter()
        {
            long next = Records.Count == 0 ? _logBlocks : Records[^1].Position + Records[^1].Blocks;
            return new MemoryLogSink(_logBlocks, _bufferSize, next);
        }
    }
}
