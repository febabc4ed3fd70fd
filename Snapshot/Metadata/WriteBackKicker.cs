using Journal;
using Snapshot.Sync;

namespace Snapshot.Metadata;

/// <summary>
/// Starts the journal's write-back early. A metadata segment logs every entry not yet written home, so the longer a
/// segment stays only in the log, the more each new checkpoint relogs. When a commit leaves a segment with
/// <see cref="DirtyThreshold"/> or more entries not yet home, the committer calls <see cref="Request"/>: one background
/// round at a time writes home every durable item (<see cref="MetadataJournal.WriteBackAsync"/>), and requests that
/// arrive during a round start one more.
/// </summary>
/// <remarks>
/// The rounds run on one loop that the first request starts and <see cref="DrainAsync"/> ends (at close, once nothing
/// commits any more), waiting for requests on its own signal between rounds: a request allocates nothing (a task
/// started per round cost three objects, every few commit rounds). Locking: <c>_lock</c> protects the loop's start and
/// the stop flag; held for a few instructions.
/// </remarks>
internal sealed class WriteBackKicker
{
    /// <summary>Entries not yet home in one segment that trigger a write-back round (1 KiB of entries).</summary>
    public const int DirtyThreshold = 64;

    private readonly MetadataJournal _journal;
    private readonly object _lock = new();
    private readonly AsyncAutoSignal _requested = new(); // the loop's: a round was asked for (or stop)
    private Task? _loop;
    private bool _stopping;
    private long _rounds;
    private Exception? _lastError;

    public WriteBackKicker(MetadataJournal journal) => _journal = journal;

    /// <summary>Rounds run.</summary>
    public long Rounds => Interlocked.Read(ref _rounds);

    /// <summary>The last write-back error, if any (the journal reports it to committers too).</summary>
    public Exception? LastError => Volatile.Read(ref _lastError);

    /// <summary>Asks for a write-back round (never waits).</summary>
    public void Request()
    {
        lock (_lock)
        {
            if (_stopping) return;
            _loop ??= Task.Run(LoopAsync);
        }
        _requested.Set();
    }

    private async Task LoopAsync()
    {
        while (true)
        {
            // Why we wait: for a request (a set left by one that came during the last round starts the next at once).
            await _requested.WaitAsync().ConfigureAwait(false);
            lock (_lock) { if (_stopping) return; }
            try
            {
                await _journal.WriteBackAsync().ConfigureAwait(false);
                Interlocked.Increment(ref _rounds);
            }
            catch (Exception e) when (e is JournalException or IOException or ObjectDisposedException)
            {
                Volatile.Write(ref _lastError, e);
            }
        }
    }

    /// <summary>Waits for the running round and ends the loop (before the journal is closed; later requests are ignored).</summary>
    public async Task DrainAsync()
    {
        Task? loop;
        lock (_lock)
        {
            _stopping = true;
            loop = _loop;
        }
        if (loop is null) return;
        _requested.Set();
        await loop.ConfigureAwait(false);
    }
}
