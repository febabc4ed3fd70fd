using Journal;

namespace Snapshot.Metadata;

/// <summary>
/// Starts the journal's write-back early. A metadata segment logs every entry not yet written home, so the longer a
/// segment stays only in the log, the more each new checkpoint relogs. When a commit leaves a segment with
/// <see cref="DirtyThreshold"/> or more entries not yet home, the committer calls <see cref="Request"/>: one background
/// round at a time writes home every durable item (<see cref="MetadataJournal.WriteBackAsync"/>), and requests that
/// arrive during a round start one more.
/// </summary>
/// <remarks>Locking: <c>_lock</c> protects the running round and the follow-up flag; held for a few instructions.</remarks>
internal sealed class WriteBackKicker
{
    /// <summary>Entries not yet home in one segment that trigger a write-back round (1 KiB of entries).</summary>
    public const int DirtyThreshold = 64;

    private readonly MetadataJournal _journal;
    private readonly object _lock = new();
    private Task? _running;
    private bool _again;
    private long _rounds;
    private Exception? _lastError;

    private readonly Func<Task> _run;

    public WriteBackKicker(MetadataJournal journal)
    {
        _journal = journal;
        _run = RunAsync;
    }

    /// <summary>Rounds run.</summary>
    public long Rounds => Interlocked.Read(ref _rounds);

    /// <summary>The last write-back error, if any (the journal reports it to committers too).</summary>
    public Exception? LastError => Volatile.Read(ref _lastError);

    /// <summary>Asks for a write-back round (never waits).</summary>
    public void Request()
    {
        lock (_lock)
        {
            if (_running is not null) { _again = true; return; }
            _running = Task.Run(_run);
        }
    }

    private async Task RunAsync()
    {
        while (true)
        {
            try
            {
                await _journal.WriteBackAsync().ConfigureAwait(false);
                Interlocked.Increment(ref _rounds);
            }
            catch (Exception e) when (e is JournalException or IOException or ObjectDisposedException)
            {
                Volatile.Write(ref _lastError, e);
            }
            lock (_lock)
            {
                if (!_again) { _running = null; return; }
                _again = false;
            }
        }
    }

    /// <summary>Waits for the running round (before the journal is closed).</summary>
    public async Task DrainAsync()
    {
        while (true)
        {
            Task? t;
            lock (_lock) { t = _running; _again = false; }
            if (t is null) return;
            await t.ConfigureAwait(false);
        }
    }
}
