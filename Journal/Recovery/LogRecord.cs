using System.Globalization;
using System.Text;
using Journal.Format;

namespace Journal.Recovery;

/// <summary>One op of a decoded record: its header and its data.</summary>
/// <param name="Header">The op header.</param>
/// <param name="Data">The op data (<see cref="OpHeader.Length"/> bytes).</param>
public readonly record struct LogOp(OpHeader Header, ReadOnlyMemory<byte> Data)
{
    /// <summary>The header fields and up to the first 16 bytes of data in hex.</summary>
    public override string ToString()
    {
        var sb = new StringBuilder(Header.ToString());
        if (Data.Length > 0)
        {
            sb.Append(" data=");
            var d = Data.Span;
            for (int i = 0; i < Math.Min(16, d.Length); i++) sb.Append(d[i].ToString("x2", CultureInfo.InvariantCulture));
            if (d.Length > 16) sb.Append("...");
        }
        return sb.ToString();
    }
}

/// <summary>A record read back from the log and checked (header, cycle stamps, CRC, ops).</summary>
public sealed class LogRecord
{
    internal LogRecord(RecordHeader header, IReadOnlyList<LogOp> ops)
    {
        Header = header;
        Ops = ops;
    }

    /// <summary>The record's LSN.</summary>
    public Lsn Lsn => Header.Lsn;

    /// <summary>The decoded header.</summary>
    public RecordHeader Header { get; }

    /// <summary>What the record is.</summary>
    public RecordKind Kind => Header.Kind;

    /// <summary>Blocks the record occupies.</summary>
    public int Blocks => Header.RecordBlocks;

    /// <summary>The ops, in order, with their data (the displaced words put back).</summary>
    public IReadOnlyList<LogOp> Ops { get; }

    /// <summary>The header on one line, then one indented line per op (like a log print).</summary>
    public override string ToString()
    {
        var sb = new StringBuilder();
        sb.Append(Header.ToString());
        foreach (var op in Ops) sb.Append("\n  ").Append(op.ToString());
        return sb.ToString();
    }
}
