using System.Globalization;
using Journal.Format;

namespace Journal.Recovery;

/// <summary>What <see cref="LogRecovery.Recover"/> found: where the log's live part is and what was replayed.</summary>
public sealed class RecoveryResult
{
    /// <summary>The log that was recovered.</summary>
    public required LogRegion Region { get; init; }

    /// <summary>Size of the log in blocks.</summary>
    public uint LogBlocks => Region.BlockCount;

    /// <summary>The LSN of the last valid record (the head record).</summary>
    public required Lsn HeadLsn { get; init; }

    /// <summary>
    /// The oldest LSN still needed: the tail recorded in the head record, or <see cref="NextLsn"/> for a clean log
    /// (nothing is needed).
    /// </summary>
    public required Lsn TailLsn { get; init; }

    /// <summary>Where the next record goes: the cycle and block just after the head record.</summary>
    public required Lsn NextLsn { get; init; }

    /// <summary>True when the head record is an unmount record: the log was shut down cleanly, nothing to replay.</summary>
    public required bool Clean { get; init; }

    /// <summary>Records read and validated between the tail and the head (pads and the unmount record included).</summary>
    public required int RecordsScanned { get; init; }

    /// <summary>Complete transactions handed to the delivery callback.</summary>
    public required int TransactionsDelivered { get; init; }

    /// <summary>True when records or blocks past the last valid record were found and discarded as a torn write.</summary>
    public required bool TornHeadTruncated { get; init; }

    /// <summary>Blocks written in the last pass but discarded behind the head (torn or partial records).</summary>
    public required long DiscardedBlocks { get; init; }

    /// <summary>Transactions seen without a commit (or whose start lies before the tail); never delivered.</summary>
    public required int IncompleteTransactionsDropped { get; init; }

    /// <summary>A transaction id above every id seen in the live log; a writer hands out ids from here.</summary>
    public required uint NextTransactionId { get; init; }

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
