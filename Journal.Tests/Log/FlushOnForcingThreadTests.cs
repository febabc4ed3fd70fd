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
        var dev = new FlushThreadDevice(new MemoryBlockDevice(256, "log"));
        var region = new LogRegion(dev, 0, 256);
        LogWriter.Format(region);
        await using var w = LogWriter.Open(region, new LogWriterOptions { IclogCount = 4, IclogSize = 2048, FlushOnForcingThread = here });
        uint tid = w.AllocateTransactionId();
        await w.WriteAsync(tid, [Payload(1, 0, 300)], start: true).Within();
        var commit = await w.WriteCommitAsync(tid).Within();
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

        protected override void FlushCore()
        {
            Interlocked.Increment(ref _sync);
            Volatile.Write(ref _lastThread, Environment.CurrentManagedThreadId);
            Inner.Flush();
        }

        protected override async ValueTask FlushCoreAsync(CancellationToken cancellationToken)
        {
            await Task.Yield();
            Interlocked.Increment(ref _async);
            Volatile.Write(ref _lastThread, Environment.CurrentManagedThreadId);
            Inner.Flush();
        }
    }
}
