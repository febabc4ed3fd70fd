using Journal.Tests.Tools;
using Snapshot;
using static Journal.Tests.Snapshot.SnapTestUtil;

namespace Journal.Tests.Snapshot;

/// <summary>
/// I/O that waits for the store's gate while a close holds it (the close disposes the devices) fails with the store's
/// "closed" error once it gets in, as I/O started after the close does, and never touches a disposed device.
/// </summary>
public sealed class CloseRaceTests
{
    [Fact]
    public async Task Requests_that_waited_for_the_gate_during_a_close_fail_as_closed()
    {
        using var dir = new TempFolder();
        var store = await SnapshotStore.CreateAsync(dir["store"], new StoreOptions { OriginSectors = 2048, LogBlocks = 2048 });
        var snap = await store.CreateSnapshotAsync("s");
        var other = await store.CreateSnapshotAsync("t");
        await store.Origin.WriteAsync(64, new byte[4096]); // t has an exception: a snapshot read of it goes to its COW file
        await other.WriteAsync(0, new byte[4096]);          // t is written: its next write does not commit the flag

        // Hold the gate as a snapshot operation would; queue every kind of request behind it, then the close.
        await store.Gate.EnterExclusiveAsync();
        var requests = new (string What, Task Task)[]
        {
            ("origin write", store.Origin.WriteAsync(0, new byte[4096]).AsTask()),
            ("origin read", store.Origin.ReadAsync(0, new byte[4096]).AsTask()),
            ("snapshot read", other.ReadAsync(64, new byte[4096]).AsTask()),
            ("snapshot write", other.WriteAsync(8, new byte[4096]).AsTask()),
            ("first snapshot write", snap.WriteAsync(8, new byte[4096]).AsTask()),
        };
        var close = store.CloseAsync().AsTask();
        var deadline = DateTime.UtcNow + Watchdog;
        while (store.GateExclusiveWaiters == 0)
        {
            Assert.True(DateTime.UtcNow < deadline, "the close never queued for the gate");
            await Task.Delay(1);
        }
        Assert.All(requests, r => Assert.False(r.Task.IsCompleted, $"{r.What} did not wait for the gate"));
        store.Gate.ExitExclusive();
        await close.WaitAsync(Watchdog);

        foreach (var (what, task) in requests)
        {
            var e = await Assert.ThrowsAnyAsync<Exception>(() => task.WaitAsync(Watchdog));
            Assert.True(e is JournalException && e.Message.EndsWith("store is closed", StringComparison.Ordinal), $"{what}: {e.GetType().Name}: {e.Message}");
        }
    }
}
