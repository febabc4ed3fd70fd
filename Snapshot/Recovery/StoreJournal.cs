using Journal;
using Journal.Format;
using Journal.Storage;
using Microsoft.Extensions.Logging;

namespace Snapshot.Recovery;

/// <summary>
/// The store's metadata journal on <c>journal.log</c> (the whole file is the log region): its options, and its creation
/// (formatted with the store). Opening it after a stop is <see cref="StoreRecovery"/>'s.
/// </summary>
internal static class StoreJournal
{
    /// <summary>Smallest journal the store accepts, in 512-byte blocks (1 MiB).</summary>
    public const uint MinLogBlocks = 2048;

    /// <summary>
    /// Journal options for a log of <paramref name="blocks"/> blocks (smaller log buffers for small logs). No checkpoint
    /// gathering: the store commits through one commit pipeline, whose next round is already being made while a force
    /// runs, so there are no woken committers to wait for (the gather window would only spin). The push runs its log
    /// flushes on its own thread (<see cref="JournalOptions.FlushOnForcingThread"/>): the pipeline is its only committer,
    /// and two hand-offs a round fewer is CPU and latency every writer waits for.
    /// </summary>
    /// <param name="blocks">The log's size in blocks.</param>
    /// <param name="loggerFactory">Where the journal logs (null: nowhere).</param>
    /// <param name="name">The journal's name in log messages and metrics (the store's folder).</param>
    public static JournalOptions Options(uint blocks, ILoggerFactory? loggerFactory = null, string? name = null) => blocks >= 8192
        ? new JournalOptions { LogSizeBytes = (long)blocks * 512, CheckpointGatherWindow = TimeSpan.Zero, FlushOnForcingThread = true, LoggerFactory = loggerFactory, Name = name }
        : new JournalOptions { LogSizeBytes = (long)blocks * 512, LogBufferCount = 4, LogBufferSize = 16 * 1024, CheckpointGatherWindow = TimeSpan.Zero, FlushOnForcingThread = true, LoggerFactory = loggerFactory, Name = name };

    /// <summary>The log region: the whole device.</summary>
    public static LogRegion Region(BlockDevice log) => new(log, 0, (uint)Math.Min(log.SectorCount, LogFormat.MaxLogBlocks));

    /// <summary>Formats the whole device as an empty log and starts a journal on it.</summary>
    public static MetadataJournal Create(BlockDevice log, ILoggerFactory? loggerFactory = null, string? name = null) =>
        MetadataJournal.Create(Region(log), Options((uint)log.SectorCount, loggerFactory, name));
}
