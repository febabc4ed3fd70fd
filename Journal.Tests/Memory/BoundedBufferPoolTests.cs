using Journal.Memory;

namespace Journal.Tests.Memory;

public sealed class BoundedBufferPoolTests
{
    [Fact]
    public void Rent_RoundsUpToPowerOfTwoClasses_AndReusesReturnedBuffers()
    {
        var alloc = new FlakyAllocator();
        var pool = new BoundedBufferPool(1 << 20, 0, 4096, alloc);
        var a = pool.TryRent(100)!;
        Assert.Equal(128, a.Length);
        pool.Return(a);
        var b = pool.TryRent(120)!;
        Assert.Same(a, b);
        Assert.Equal(1, alloc.Allocations);
        Assert.Equal(128, pool.CurrentBytes);
    }

    [Fact]
    public void Budget_IsNeverExceeded_CachedBuffersAreDroppedToMakeRoom()
    {
        var pool = new BoundedBufferPool(64 << 10, 0, 4096, new FlakyAllocator());
        var held = new List<byte[]>();
        for (int i = 0; i < 16; i++) held.Add(pool.TryRent(4096)!);
        Assert.Equal(64 << 10, pool.CurrentBytes);
        Assert.Null(pool.TryRent(64)); // full
        Assert.Equal(1, pool.Failures);
        foreach (var b in held) pool.Return(b); // cached, still counted
        Assert.Equal(64 << 10, pool.CurrentBytes);
        var big = pool.TryRent(32 << 10); // other classes' cache is dropped to make room
        Assert.NotNull(big);
        Assert.True(pool.CurrentBytes <= pool.BudgetBytes);
        Assert.True(pool.PeakBytes <= pool.BudgetBytes);
    }

    [Fact]
    public void FailingAllocator_FailsTheRequest_WithoutChargingTheBudget()
    {
        var alloc = new FlakyAllocator();
        var pool = new BoundedBufferPool(1 << 20, 0, 4096, alloc);
        alloc.Set(FlakyAllocator.Mode.Fail);
        Assert.Null(pool.TryRent(1000));
        Assert.Equal(0, pool.CurrentBytes);
        Assert.Equal(1, pool.Failures);
        alloc.Set(FlakyAllocator.Mode.Normal);
        Assert.NotNull(pool.TryRent(1000));
    }

    [Fact]
    public void EmergencyReserve_CountsCurrentMaxAndTotal_AndKeepsPushSlotsApart()
    {
        var pool = new BoundedBufferPool(1 << 20, 64 << 10, 16 << 10, new FlakyAllocator());
        var r = pool.Reserve;
        Assert.Equal(4, r.GeneralSlots);
        var got = Enumerable.Range(0, 4).Select(_ => r.TryTakeGeneral(10_000)).ToList();
        Assert.All(got, Assert.NotNull);
        Assert.Null(r.TryTakeGeneral(1)); // general slots exhausted...
        var push = r.TryTakePush(32);
        Assert.NotNull(push); // ...but the push still has its own
        Assert.Null(r.TryTakeGeneral(20_000)); // larger than a slot
        Assert.Equal(5, r.Current);
        Assert.Equal(5, r.Max);
        foreach (var b in got) pool.Return(b!);
        pool.Return(push!);
        Assert.Equal(0, r.Current);
        Assert.Equal(5, r.Max);
        Assert.Equal(5, r.Total);
        Assert.Equal(0, pool.CurrentBytes); // reserve buffers never count against the budget
    }

    [Fact]
    public async Task WaitForReturn_CompletesWhenABufferComesBack()
    {
        var pool = new BoundedBufferPool(64 << 10, 0, 4096, new FlakyAllocator());
        var b = pool.TryRent(64 << 10)!;
        var wait = pool.WaitForReturnAsync();
        Assert.False(wait.IsCompleted);
        pool.Return(b);
        await wait.WaitAsync(TimeSpan.FromSeconds(30));
    }
}
