using static Journal.Tests.Cil.JournalFixture;

namespace Journal.Tests.Cil;

public sealed class CommitPathTests
{
    [Fact]
    public async Task Commit_ReturnsCurrentSequence_AndForceMakesItDurable()
    {
        var (j, sink) = Create();
        var home = new TestHome();
        var item = new TestItem(home, 1);
        ulong seq = await CommitAsync(j, item, 42);
        Assert.Equal(1UL, seq);
        Assert.True(item.IsPinned);
        await j.ForceAsync(seq).AsTask().WaitAsync(Watchdog);
        Assert.Equal(1UL, j.DurableSequence);
        Assert.False(item.IsPinned);
        Assert.True(item.IsInAil);
        var cps = Checkpoints(sink.Crash());
        Assert.Single(cps);
        Assert.Equal(1UL, cps[0].Sequence);
        Assert.Equal([(1UL, 42L, 64)], cps[0].Items);
        await j.CloseAsync().AsTask().WaitAsync(Watchdog);
        Assert.True(home.TryGet(1, out var data, out var lsn));
        Assert.Equal(42, TestItem.VersionOf(data));
        Assert.Equal(cps[0].Start, lsn);
    }
}
