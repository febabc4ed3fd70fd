using Journal;
using Journal.Cil;
using Journal.Format;
using Journal.Recovery;
using Journal.Storage;

namespace Snapshot.Metadata;

/// <summary>
/// The store's metadata journal on <c>journal.log</c> (the whole file is the log region): created (formatted) with the
/// store; at open, recovered and replayed into the recovery handlers before the store loads its COW files.
/// </summary>
internal static class StoreJournal
{
    /// <summary>Smallest journal the store accepts, in 512-byte blocks (1 MiB).</summary>
    public const uint MinLogBlocks = 2048;

    /// <summary>Journal options for a log of <paramref name="blocks"/> blocks (smaller log buffers for small logs).</summary>
    public static JournalOptions Options(uint blocks) => blocks >= 8192
        ? new JournalOptions { LogSizeBytes = (long)blocks * 512 }
        : new JournalOptions { LogSizeBytes = (long)blocks * 512, LogBufferCount = 4, LogBufferSize = 16 * 1024 };

    private static LogRegion Region(BlockDevice log) => new(log, 0, (uint)log.SectorCount);

    /// <summary>Formats the whole device as an empty log and starts a journal on it.</summary>
    public static MetadataJournal Create(BlockDevice log) => MetadataJournal.Create(Region(log), Options((uint)log.SectorCount));

    /// <summary>
    /// Recovers the log on <paramref name="log"/>, replays it into <paramref name="handlers"/>, and starts the journal.
    /// <paramref name="replayed"/> is the number of checkpoints replayed (0 after a clean close).
    /// </summary>
    public static MetadataJournal Open(BlockDevice log, IReadOnlyDictionary<ushort, IItemRecoveryHandler> handlers, out long replayed)
    {
        var journal = MetadataJournal.Open(Region(log), Options((uint)log.SectorCount), handlers);
        replayed = journal.RecoveredCheckpoints;
        return journal;
    }

    /// <summary>
    /// The superblock pass of recovery: reads the log (writing nothing) and replays only the superblock item's copies
    /// into <paramref name="superblock"/>, without its completion hook; every other item is skipped. It runs before the
    /// full replay so that the metadata segments are applied against the snapshot list as the log leaves it.
    /// </summary>
    public static void ReplaySuperblock(BlockDevice log, SuperblockRecoveryHandler superblock)
    {
        var region = Region(log);
        var skip = new SkipAllHandler();
        var replay = new CheckpointReplay(region.Name, new Dictionary<ushort, IItemRecoveryHandler>
        {
            [SuperblockItem.Type] = superblock,
            [AreaSegmentItem.Type] = skip,
        });
        LogRecovery.Recover(region, t => replay.Deliver(t.StartLsn, t.Regions));
    }

    private sealed class SkipAllHandler : IItemRecoveryHandler
    {
        public Lsn GetHomeLsn(ulong itemId) => SkipAll;
        public void Apply(ulong itemId, Lsn checkpointLsn, IReadOnlyList<ReadOnlyMemory<byte>> regions) { }
    }

    /// <summary>An LSN above every real one: a home copy claiming it makes recovery skip every logged copy.</summary>
    public static Lsn SkipAll => new(uint.MaxValue, uint.MaxValue);
}
