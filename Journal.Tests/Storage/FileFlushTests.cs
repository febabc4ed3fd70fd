using Journal.Storage;

namespace Journal.Tests.Storage;

/// <summary>
/// <see cref="FileBlockDevice"/>'s asynchronous flush: pooled work items that are their own value-task sources, so a
/// steady stream of flushes allocates nothing; many at once all complete; a cancelled one never starts.
/// </summary>
[Collection(Journal.Tests.Cil.AllocationMeasurement.Name)]
public sealed class FileFlushTests : IDisposable
{
    private readonly TempDirectory _dir = new();

    public void Dispose() => _dir.Dispose();

    [Fact]
    public async Task Steady_asynchronous_flushes_allocate_nothing()
    {
        using var dev = FileBlockDevice.Create(_dir.File("dev"), 64);
        var data = new byte[4096];
        // The loops are in this method: its own state machine is boxed once, at its first await. The first 200 flushes
        // warm up the JIT, the pool and the thread pool. The counter is the whole process's, and the test host
        // allocates now and then on its own threads (its messages): the lowest of five trials is the flushes' own cost.
        const int Warm = 200, Flushes = 1000, Trials = 5;
        double perFlush = double.MaxValue;
        long before = 0;
        for (int i = 0; i < Warm + Trials * Flushes; i++)
        {
            if (i >= Warm && (i - Warm) % Flushes == 0)
            {
                long now = GC.GetTotalAllocatedBytes(precise: true);
                if (i > Warm) perFlush = Math.Min(perFlush, (double)(now - before) / Flushes);
                before = GC.GetTotalAllocatedBytes(precise: true);
            }
            await dev.WriteAsync(i % 8 * 8, data);
            await dev.FlushAsync();
        }
        perFlush = Math.Min(perFlush, (double)(GC.GetTotalAllocatedBytes(precise: true) - before) / Flushes);
        // The old flush (Task.Run with a delegate, a boxed state machine) cost a few hundred bytes each.
        Assert.True(perFlush < 16, $"{perFlush:F1} bytes allocated per asynchronous flush (lowest of {Trials} trials)");
        Assert.Equal(Warm + Trials * Flushes, dev.Counters.Flushes);
    }

    [Fact]
    public async Task More_flushes_at_once_than_the_pool_keeps_all_complete_and_are_counted()
    {
        using var dev = FileBlockDevice.Create(_dir.File("dev"), 64);
        for (int round = 0; round < 5; round++)
        {
            var flushes = Enumerable.Range(0, 40).Select(_ => dev.FlushAsync().AsTask()).ToArray();
            await Task.WhenAll(flushes).WaitAsync(TimeSpan.FromSeconds(60));
        }
        Assert.Equal(200, dev.Counters.Flushes);
    }

    [Fact]
    public async Task A_cancelled_flush_throws_and_is_not_counted()
    {
        using var dev = FileBlockDevice.Create(_dir.File("dev"), 64);
        using var cts = new CancellationTokenSource();
        cts.Cancel();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => dev.FlushAsync(cts.Token).AsTask());
        await dev.FlushAsync();
        Assert.Equal(1, dev.Counters.Flushes);
    }
}
