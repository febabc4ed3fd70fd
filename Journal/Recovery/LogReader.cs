using Journal.Format;

namespace Journal.Recovery;

/// <summary>
/// Reads and checks records of a log region: single records by LSN, or every record between two LSNs (for printing,
/// like a log print tool). Never writes. <see cref="LogRecovery"/> uses it to find and validate the live log.
/// </summary>
public sealed class LogReader
{
    private readonly LogRegion _region;
    private readonly uint _n;

    /// <summary>A reader of <paramref name="region"/>.</summary>
    public LogReader(LogRegion region)
    {
        region.Validate();
        _region = region;
        _n = region.BlockCount;
    }

    /// <summary>The region read.</summary>
    public LogRegion Region => _region;

    /// <summary>The cycle stamped in block <paramref name="block"/> (for a header block, its cycle field).</summary>
    public uint BlockCycle(uint block)
    {
        Span<byte> b = stackalloc byte[LogFormat.BlockSize];
        ReadBlocks(block, b);
        return RecordCodec.BlockCycle(b);
    }

    /// <summary>
    /// Reads the record at <paramref name="lsn"/> and checks it completely; throws <see cref="CorruptionException"/>
    /// naming the block, the LSN and what is wrong when it is not a sound record.
    /// </summary>
    public LogRecord ReadRecord(Lsn lsn)
    {
        if (lsn.Block >= _n)
            throw new CorruptionException(_region.Name, lsn.Block, lsn, "LSN block is beyond the end of the log", $"< {_n}", lsn.Block.ToString());
        if (TryReadRecord(Position(lsn), out var record, out var problem)) return record!;
        throw problem!.ToException(_region.Name, lsn);
    }

    /// <summary>
    /// Reads consecutive records from <paramref name="from"/> while their LSN is below <paramref name="to"/>; each is
    /// checked as by <see cref="ReadRecord"/> (a bad one throws). Use the tail and next LSN of a
    /// <see cref="RecoveryResult"/> to list the live log.
    /// </summary>
    public IEnumerable<LogRecord> ReadRecords(Lsn from, Lsn to)
    {
        long pos = Position(from), end = Position(to);
        while (pos < end)
        {
            var r = ReadRecord(LsnAt(pos));
            yield return r;
            pos += r.Blocks;
        }
    }

    /// <summary>
    /// The absolute position of <paramref name="lsn"/>: <c>cycle × blocks + block</c>. Positions order LSNs the way the
    /// log does (a later record has a higher position), and the distance between two is a count of blocks.
    /// </summary>
    public long Position(Lsn lsn) => (long)lsn.Cycle * _n + lsn.Block;

    /// <summary>The LSN at absolute position <paramref name="position"/> (see <see cref="Position"/>).</summary>
    public Lsn LsnAt(long position) => new((uint)(position / _n), (uint)(position % _n));

    /// <summary>
    /// Reads the record at <paramref name="lsn"/>: true with the record when it is sound (header, cycle stamps, CRC-32C,
    /// ops), else false with the error <see cref="ReadRecord"/> would throw. Never throws for bad data (a log printer
    /// shows a damaged record and goes on).
    /// </summary>
    public bool TryReadRecord(Lsn lsn, out LogRecord? record, out CorruptionException? problem)
    {
        problem = null;
        if (lsn.Block >= _n)
        {
            record = null;
            problem = new CorruptionException(_region.Name, lsn.Block, lsn, "LSN block is beyond the end of the log", $"< {_n}", lsn.Block.ToString());
            return false;
        }
        if (TryReadRecord(Position(lsn), out record, out var p)) return true;
        problem = p!.ToException(_region.Name, lsn);
        return false;
    }

    /// <summary>Reads whole blocks from log block <paramref name="block"/>, wrapping at the end of the log.</summary>
    public void ReadBlocks(long block, Span<byte> dest)
    {
        block %= _n;
        while (dest.Length > 0)
        {
            int count = (int)Math.Min(dest.Length / LogFormat.BlockSize, _n - block);
            _region.Device.Read(_region.StartSector + block, dest[..(count * LogFormat.BlockSize)]);
            dest = dest[(count * LogFormat.BlockSize)..];
            block = (block + count) % _n;
        }
    }

    /// <summary>
    /// Reads the record whose header should sit at absolute block <paramref name="abs"/> and checks header, stamps,
    /// CRC and ops. On failure returns false with the problem; never throws for bad data.
    /// </summary>
    internal bool TryReadRecord(long abs, out LogRecord? record, out RecordProblem? problem)
    {
        record = null;
        var expected = LsnAt(abs);
        var headerBlock = new byte[LogFormat.BlockSize];
        ReadBlocks(expected.Block, headerBlock);
        var h = RecordHeader.Read(headerBlock);
        problem = RecordCodec.CheckHeader(h, expected, _n);
        if (problem is not null) return false;

        var stored = new byte[h.RecordBlocks * LogFormat.BlockSize];
        headerBlock.CopyTo(stored, 0);
        if (h.PayloadBlocks > 0) ReadBlocks(expected.Block + 1, stored.AsSpan(LogFormat.BlockSize));
        problem = RecordCodec.CheckStored(stored, h);
        if (problem is not null) return false;

        var payload = stored.AsMemory(LogFormat.BlockSize);
        RecordCodec.Unstamp(payload.Span, h);
        var ops = new List<(OpHeader Header, ReadOnlyMemory<byte> Data)>((int)Math.Min(h.OpCount, 4096));
        problem = RecordCodec.ParseOps(payload, h, ops);
        if (problem is not null) return false;

        var list = new LogOp[ops.Count];
        for (int i = 0; i < list.Length; i++) list[i] = new LogOp(ops[i].Header, ops[i].Data);
        record = new LogRecord(h, list);
        return true;
    }
}
