using Journal.Format;

namespace Journal.Tests.Cil;

/// <summary>Helpers to build journals over <see cref="MemoryLogSink"/> and run transactions on test items.</summary>
public static class JournalFixture
{
    public static readonly TimeSpan Watchdog = TimeSpan.FromSeconds(60);

    public static JournalOptions SmallOptions(uint logBlocks = 2048, Action<JournalOptionsBuilder>? tweak = null)
    {
        var b = new JournalOptionsBuilder { LogSizeBytes = logBlocks * 512L };
        tweak?.Invoke(b);
        return b.Build();
    }

    public static (MetadataJournal Journal, MemoryLogSink Sink) Create(uint logBlocks = 2048, JournalOptions? options = null)
    {
        var sink = new MemoryLogSink(logBlocks, 8192);
        var j = MetadataJournal.Create(sink, options ?? SmallOptions(logBlocks));
        return (j, sink);
    }

    /// <summary>Sets the item's version (and optionally size) and commits it in a transaction of its own.</summary>
    public static async ValueTask<ulong> CommitAsync(MetadataJournal j, TestItem item, long version, int? size = null)
    {
        using var tx = await j.BeginTransactionAsync(Reserve(j, item, size));
        using (await item.LockAsync())
        {
            item.SetVersion(version, size);
            tx.AddItem(item);
            return await tx.CommitAsync();
        }
    }

    public static ulong Commit(MetadataJournal j, TestItem item, long version, int? size = null)
    {
        using var tx = j.BeginTransactionAsync(Reserve(j, item, size)).AsTask().GetAwaiter().GetResult();
        using (item.Lock())
        {
            item.SetVersion(version, size);
            tx.AddItem(item);
            return tx.Commit();
        }
    }

    /// <summary>Awaits <paramref name="task"/> under the watchdog; on timeout fails with the journal's state.</summary>
    public static async Task Within(this Task task, MetadataJournal j, TimeSpan? limit = null)
    {
        try { await task.WaitAsync(limit ?? Watchdog); }
        catch (TimeoutException)
        {
            Assert.Fail($"watchdog: {j.Statistics} {j.MemoryStatistics} free={j.Space.Free} push: {j.Cil.DescribeState()}");
        }
    }

    /// <summary>What a commit of <paramref name="item"/> at <paramref name="size"/> needs (reserved before its lock is taken).</summary>
    public static int Reserve(MetadataJournal j, TestItem item, int? size) =>
        (int)j.EstimateLogBytes(new LogItemSize(item.Regions, Math.Max(8, size ?? item.State.Length)));

    /// <summary>Recovered checkpoints of a crash image, read by the journal's checkpoint reader: (start LSN, sequence, items (id, version)).</summary>
    public static List<(Lsn Start, ulong Sequence, List<(ulong Id, long Version, int Length)> Items)> Checkpoints(MemoryLogSink.CrashImage image)
    {
        var list = new List<(Lsn, ulong, List<(ulong, long, int)>)>();
        var reader = new Journal.Recovery.CheckpointReader("memory-log");
        image.Recover((start, regions) =>
        {
            var c = reader.Read(0, start, start, regions);
            var items = new List<(ulong, long, int)>();
            foreach (var item in c.Items)
            {
                var data = item.Regions.SelectMany(m => m.ToArray()).ToArray();
                items.Add((item.ItemId, data.Length >= 8 ? TestItem.VersionOf(data) : -1, data.Length));
            }
            list.Add((start, c.Sequence, items));
        });
        return list;
    }
}

/// <summary>Mutable copy of <see cref="JournalOptions"/> for tests.</summary>
public sealed class JournalOptionsBuilder
{
    public long LogSizeBytes = 1 << 20;
    public long? Soft, Hard;
    public long Budget = 8L << 20, Reserve = 256 << 10;
    public int EmergencyBuffer = 16 << 10;
    public TimeSpan EmergencyAfter = TimeSpan.FromMilliseconds(50);
    public Journal.Memory.IBufferAllocator? Allocator;
    public TimeSpan GatherWindow = new JournalOptions().CheckpointGatherWindow;
    public int BufferCount = 2;

    public JournalOptions Build() => new()
    {
        LogSizeBytes = LogSizeBytes,
        LogBufferCount = BufferCount,
        LogBufferSize = 4096,
        CilSoftLimitBytes = Soft,
        CilHardLimitBytes = Hard,
        MemoryBudgetBytes = Budget,
        EmergencyReserveBytes = Reserve,
        EmergencyBufferBytes = EmergencyBuffer,
        EmergencyAfter = EmergencyAfter,
        Allocator = Allocator,
        CheckpointGatherWindow = GatherWindow,
    };
}
