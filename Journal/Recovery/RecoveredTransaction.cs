using System.Globalization;
using Journal.Format;

namespace Journal.Recovery;

/// <summary>A complete log transaction found by recovery: its regions, reassembled, in the order they were written.</summary>
public sealed class RecoveredTransaction
{
    internal RecoveredTransaction(uint transactionId, Lsn startLsn, Lsn commitLsn, IReadOnlyList<ReadOnlyMemory<byte>> regions)
    {
        TransactionId = transactionId;
        StartLsn = startLsn;
        CommitLsn = commitLsn;
        Regions = regions;
    }

    /// <summary>The transaction id the writer gave it.</summary>
    public uint TransactionId { get; }

    /// <summary>The LSN of the record holding its start op.</summary>
    public Lsn StartLsn { get; }

    /// <summary>The LSN of the record holding its commit op; transactions are delivered in this order.</summary>
    public Lsn CommitLsn { get; }

    /// <summary>The regions, each exactly as it was passed to the writer.</summary>
    public IReadOnlyList<ReadOnlyMemory<byte>> Regions { get; }

    /// <summary>Total bytes of the regions.</summary>
    public long PayloadBytes => Regions.Sum(r => (long)r.Length);

    /// <inheritdoc/>
    public override string ToString() => string.Create(CultureInfo.InvariantCulture,
        $"transaction tid=0x{TransactionId:x8} start={StartLsn} commit={CommitLsn} regions={Regions.Count} bytes={PayloadBytes}");
}
