using System.Runtime.CompilerServices;

namespace Snapshot.Sync;

/// <summary>
/// Shares device flushes among concurrent callers (group commit for a data device): a caller's
/// <see cref="FlushAsync"/> returns once a flush that <em>started after the call</em> has completed, so every write that
/// returned before the call is durable. Callers arriving while a flush runs are covered together by the next one.
/// </summary>
/// <remarks>
/// Locking: <c>_lock</c> protects the ticket counters and the running round; held for a few instructions, never across
/// an await, never while calling the flush delegate.
/// </remarks>
internal sealed class GroupFlush
{
    private readonly Func<CancellationToken, ValueTask> _flush;
    private readonly object _lock = new();
    private long _requested;      // tickets handed out
    private long _completed;      // every ticket <= this is covered by a finished flush
    private Task? _running;       // the current round, if any
    private long _rounds;

    public GroupFlush(Func<CancellationToken, ValueTask> flush) => _flush = flush;

    /// <summary>Flushes issued to the device (one per round).</summary>
    public long Rounds => Interlocked.Read(ref _rounds);

    /// <summary>Returns when every write that returned before this call is durable.</summary>
    /// <remarks>Its state machine is pooled: a caller that waits for a round allocates nothing of its own.</remarks>
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    public async ValueTask FlushAsync(CancellationToken cancellationToken = default)
    {
        long ticket;
        lock (_lock) ticket = ++_requested;
        while (true)
        {
            Task round;
            lock (_lock)
            {
                if (_completed >= ticket) return;
                if (_running is null)
                {
                    long target = _requested;
                    _running = RunRoundAsync(target);
                }
                round = _running;
            }
            // Waiting for a flush round (ours or one already running, after which we start or join the next).
            if (cancellationToken.CanBeCanceled) await round.WaitAsync(cancellationToken).ConfigureAwait(false);
            else await round.ConfigureAwait(false);
        }
    }

    private async Task RunRoundAsync(long target)
    {
        await Task.Yield(); // leave the caller's lock scope before doing I/O
        try
        {
            await _flush(CancellationToken.None).ConfigureAwait(false);
            Interlocked.Increment(ref _rounds);
            lock (_lock) { if (target > _completed) _completed = target; }
        }
        finally
        {
            lock (_lock) _running = null;
        }
    }
}
