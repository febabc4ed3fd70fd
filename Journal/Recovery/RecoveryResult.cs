using System.Globalization;
using Journal.Format;

namespace Journal.Recovery;

/// <summary>What <see cref="LogRecovery.Recover"/> found: where the log's live part is and what was replayed. Only recovery creates one.</summary>
public sealed class RecoveryResult
{
    internal RecoveryResult() { }

    /// <summary>The log that was recovered.</summary>
    public LogRegion Region { get; internal init; }

    /// <summary>Size of the log in blocks.</summary>
    public uint LogBlocks => Region.BlockCount;

    /// <summary>The LSN of the last valid record (the head record).</summary>
    public Lsn HeadLsn { get; internal init; }

    /// <summary>
    /// The oldest LSN still needed: the tail recorded in the head record, or <see cref="NextLsn"/> for a clean log
    /// (nothing is needed).
    /// </summary>
    public Lsn TailLsn { get; internal init; }

    /// <summary>Where the next record goes: the cycle and block just after the head record.</summary>
    public Lsn NextLsn { get; internal init; }

    /// <summary>True when the head record is an unmount record: the log was shut down cleanly, nothing to replay.</summary>
    public bool Clean { get; internal init; }

    /// <summary>Records read and validated between the tail and the head (pads and the unmount record included).</summary>
    public int RecordsScanned { get; internal init; }

    /// <summary>Complete transactions handed to the delivery callback.</summary>
    public int TransactionsDelivered { get; internal init; }

    /// <summary>True when records or blocks past the last valid record were found and discarded as a torn write.</summary>
    public bool TornHeadTruncated { get; internal init; }

    /// <summary>Blocks written in the last pass but discarded behind the head (torn or partial records).</summary>
    public long DiscardedBlocks { get; internal init; }

    /// <summary>Transactions seen without a commit (or whose start lies before the tail); never delivered.</summary>
    public int IncompleteTransactionsDropped { get; internal init; }

    /// <summary>A transaction id above every id seen in the live log; a writer hands out ids from here.</summary>
    public uint NextTransactionId { get; internal init; }

    /// <summary>
    /// Absolute block (cycle * log blocks + block) up to which blocks past the head may hold leftovers of lost writes;
    /// a writer clears them before it writes anything.
    /// </summary>
    internal long StaleEndAbs { get; init; }

    /// <inheritdoc/>
    public override string ToString() => string.Create(CultureInfo.InvariantCulture,
        $"{Region.Name}: {(Clean ? "clean" : "dirty")} head={HeadLsn} tail={TailLsn} next={NextLsn} records={RecordsScanned} " +
        $"delivered={TransactionsDelivered} incomplete-dropped={IncompleteTransactionsDropped} torn-head={(TornHeadTruncated ? "yes" : "no")} " +
        $"discarded-blocks={DiscardedBlocks} next-tid=0x{NextTransactionId:x8}");
}
