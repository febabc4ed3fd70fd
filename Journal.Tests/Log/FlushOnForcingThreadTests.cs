using Journal.Format;
using Journal.Log;
using Journal.Storage;
using Journal.Testing;
using Journal.Tests.Cil;
using static Journal.Tests.Cil.JournalFixture;
using Watch = Journal.Tests.Cil.JournalFixture;
using static Journal.Tests.Log.LogTestUtil;

namespace Journal.Tests.Log;

/// <summary>
/// <see cref="JournalOptions.FlushOnForcingThread"/>: a force that starts the log's flush runs it on its own thread
/// (the synchronous device flush, so the force has completed when it returns); without it, the flush is the device's
/// asynchronous one, which this device, like a file's, runs on a pool thread.
/// </summary>
public sealed class FlushOnForcingThreadTests
{
    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public async Task A_force_flushes_on_its_own_thread_only_when_asked(bool here)
    {
        var (dev, w) = Open(here);
        await using var _ = w;
        var commit = await CommitOneAsync(w, 1);
        dev.Reset();

        // A thread of its own, so that its id is no pool thread's.
        ValueTask force = default;
        bool doneOnReturn = false;
        int forcer = 0;
        var t = new Thread(() =>
        {
            forcer = Environment.CurrentManagedThreadId;
            force = w.ForceAsync(commit);
            doneOnReturn = force.IsCompleted;
        });
        t.Start();
        Assert.True(t.Join(Watch.Watchdog), "the force did not return");
        await force.AsTask().WaitAsync(Watch.Watchdog);
        Assert.True(w.DurableLsn >= commit);

        if (here)
        {
            Assert.True(doneOnReturn, "the force returned before its flush was done");
            Assert.Equal(0, dev.AsyncFlushes);
            Assert.Equal(1, dev.SyncFlushes);
            Assert.Equal(forcer, dev.LastFlushThread);
        }
        else
        {
            Assert.Equal(0, dev.SyncFlushes);
            Assert.Equal(1, dev.AsyncFlushes);
            Assert.NotEqual(forcer, dev.LastFlushThread);
        }
    }

    /// <summary>
    /// A flush that fails on the forcing thread fails the force and the log as one on a pool thread does: the force
    /// throws the log's shutdown error naming the device's, and so does the next call.
    /// </summary>
    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public async Task A_failing_flush_fails_the_force_and_the_log_either_way(bool here)
    {
        var (dev, w) = Open(here);
        await using var _ = w;
        var commit = await CommitOneAsync(w, 1);
        dev.FailNext = true;
        var e = await Assert.ThrowsAsync<JournalException>(() => w.ForceAsync(commit).Within());
        Assert.Contains("log shut down after an I/O error", e.Message);
        Assert.Contains("injected flush failure", e.Message);
        Assert.True(w.DurableLsn < commit);
        var again = await Assert.ThrowsAsync<JournalException>(() => w.ForceAsync(commit).Within());
        Assert.Same(e, again);
    }

    /// <summary>A force with a cancellation token never blocks its thread in a flush: the token could not stop it.</summary>
    [Fact]
    public async Task A_force_that_can_be_cancelled_waits_for_a_pool_flush()
    {
        var (dev, w) = Open(true);
        await using var _ = w;
        var commit = await CommitOneAsync(w, 1);
        dev.Reset();
        using var cts = new CancellationTokenSource();
        await w.ForceAsync(commit, cts.Token).Within();
        Assert.Equal(0, dev.SyncFlushes);
        Assert.Equal(1, dev.AsyncFlushes);
    }

    /// <summary>
    /// The forcing thread runs only the flush that covers its own buffer: a buffer another force left pending while
    /// that flush ran is written after it and flushed by the loop's next round on the pool, and the first force has
    /// returned by then. The forcer's flush is held until the second force is waiting; had the loop's next round run on
    /// the forcing thread too, the device would count two synchronous flushes and none on the pool.
    /// </summary>
    [Fact]
    public async Task Buffers_written_during_the_forcers_flush_are_flushed_on_the_pool()
    {
        var (dev, w) = Open(true);
        await using var _ = w;
        var commit1 = await CommitOneAsync(w, 1);
        dev.Reset();
        using var entered = new ManualResetEventSlim();
        using var gate = new ManualResetEventSlim();
        dev.Hold = new Held(entered, gate);

        ValueTask force1 = default;
        bool doneOnReturn = false;
        var t = new Thread(() =>
        {
            force1 = w.ForceAsync(commit1);
            doneOnReturn = force1.IsCompleted;
        });
        t.Start();
        Assert.True(entered.Wait(Watch.Watchdog), "the forcer's flush did not start");
        dev.Hold = null; // only the first synchronous flush is held

        var commit2 = await CommitOneAsync(w, 2);
        var force2 = w.ForceAsync(commit2);
        Assert.False(force2.IsCompleted, "the second force completed while the first flush was held");

        gate.Set();
        Assert.True(t.Join(Watch.Watchdog), "the first force did not return");
        Assert.True(doneOnReturn, "the first force returned before its flush was done");
        await force2.AsTask().WaitAsync(Watch.Watchdog);
        Assert.True(w.DurableLsn >= commit2);
        Assert.Equal(1, dev.SyncFlushes);
        Assert.Equal(1, dev.AsyncFlushes);
    }

    /// <summary>The journal passes the option to its log writer: every checkpoint's flush is then the synchronous one.</summary>
    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public async Task The_journal_option_reaches_the_log_writer(bool here)
    {
        var dev = new FlushThreadDevice(new MemoryBlockDevice(LogIntegrationTests.Blocks, "log"));
        var region = new LogRegion(dev, 0, LogIntegrationTests.Blocks);
        var home = new DeviceHome(new MemoryBlockDevice(DeviceHome.SectorsFor(4), "home"));
        var options = LogIntegrationTests.RealOptions();
        var j = MetadataJournal.Create(region, new JournalOptions
        {
            LogSizeBytes = options.LogSizeBytes, LogBufferCount = options.LogBufferCount, LogBufferSize = options.LogBufferSize,
            FlushOnForcingThread = here,
        });
        dev.Reset();
        for (int i = 0; i < 4; i++)
        {
            ulong seq = await CommitAsync(j, new TestItem(home, (ulong)i), 1, 100);
            await j.ForceAsync(seq).AsTask().WaitAsync(Watch.Watchdog);
        }
        Assert.True(dev.SyncFlushes + dev.AsyncFlushes >= 4, $"{dev.SyncFlushes} + {dev.AsyncFlushes} flushes for 4 forced checkpoints");
        if (here) Assert.Equal(0, dev.AsyncFlushes);
        else Assert.Equal(0, dev.SyncFlushes);
        await j.CloseAsync().AsTask().WaitAsync(Watch.Watchdog);
    }

    /// <summary>A freshly formatted 256-block log on a <see cref="FlushThreadDevice"/>, and its writer.</summary>
    private static (FlushThreadDevice Device, LogWriter Writer) Open(bool flushOnForcingThread)
    {
        var dev = new FlushThreadDevice(new MemoryBlockDevice(256, "log"));
        var region = new LogRegion(dev, 0, 256);
        LogWriter.Format(region);
        return (dev, LogWriter.Open(region, new LogWriterOptions { IclogCount = 4, IclogSize = 2048, FlushOnForcingThread = flushOnForcingThread }));
    }

    /// <summary>Writes one transaction of one 300-byte region and its commit record (not forced); returns the commit's LSN.</summary>
    private static async Task<Lsn> CommitOneAsync(LogWriter w, int seq)
    {
        uint tid = w.AllocateTransactionId();
        await w.WriteAsync(tid, [Payload(seq, 0, 300)], start: true).Within();
        return await w.WriteCommitAsync(tid).Within();
    }

    private sealed record Held(ManualResetEventSlim Entered, ManualResetEventSlim Gate);

    /// <summary>A log device that counts its synchronous and asynchronous flushes and runs the latter on a pool thread.</summary>
    private sealed class FlushThreadDevice(BlockDevice inner) : Storage.ForwardingDevice(inner)
    {
        private int _sync, _async, _lastThread;

        public int SyncFlushes => Volatile.Read(ref _sync);
        public int AsyncFlushes => Volatile.Read(ref _async);
        public int LastFlushThread => Volatile.Read(ref _lastThread);

        public void Reset()
        {
            Volatile.Write(ref _sync, 0);
            Volatile.Write(ref _async, 0);
        }

        /// <summary>Set: the next flush (either kind) fails before reaching the device.</summary>
        public volatile bool FailNext;

        /// <summary>Set: a synchronous flush signals <see cref="Held.Entered"/> and waits for <see cref="Held.Gate"/>.</summary>
        public volatile Held? Hold;

        private void MaybeFail()
        {
            if (FailNext)
            {
                FailNext = false;
                throw new IOException("injected flush failure");
            }
        }

        protected override void FlushCore()
        {
            MaybeFail();
            if (Hold is { } h)
            {
                h.Entered.Set();
                // Why we wait: the test holds this flush until the second force is waiting (it releases it itself).
                h.Gate.Wait();
            }
            Interlocked.Increment(ref _sync);
            Volatile.Write(ref _lastThread, Environment.CurrentManagedThreadId);
            Inner.Flush();
        }

        protected override async ValueTask FlushCoreAsync(CancellationToken cancellationToken)
        {
            await Task.Yield();
            MaybeFail();
            Interlocked.Increment(ref _async);
            Volatile.Write(ref _lastThread, Environment.CurrentManagedThreadId);
            Inner.Flush();
        }
    }
}
