using static Snapshot.Nbd.NbdProtocol;

namespace Journal.Tests.Nbd;

/// <summary>
/// A selected <c>qemu:dirty-bitmap:&lt;S&gt;</c> context is bound to the snapshot S as it was when selected, not to its
/// name: once S is deleted, BLOCK_STATUS fails, and it keeps failing after a new snapshot is created under the same name
/// (whose changes are not the ones the client asked for: answering from it would make an incremental backup silently
/// skip the chunks written before the new snapshot). A context selected afresh answers from the new snapshot.
/// </summary>
[System.Runtime.Versioning.UnsupportedOSPlatform("windows")]
public sealed class NbdDirtyBitmapIdentityTests
{
    private static byte[] Fill(int n, byte v)
    {
        var b = new byte[n];
        b.AsSpan().Fill(v);
        return b;
    }

    [Fact]
    public async Task A_selected_bitmap_fails_after_its_snapshot_is_replaced_by_a_new_one_of_the_same_name()
    {
        await using var h = await NbdHarness.StartAsync();
        await h.Server.CreateSnapshotAsync("tue").WaitAsync(RawNbdClient.Watchdog);
        await using var c = await h.OpenAsync("origin", structured: true, "qemu:dirty-bitmap:tue");
        uint id = c.Contexts["qemu:dirty-bitmap:tue"];
        await c.WriteAsync(0, Fill(65536, 0x31));

        var before = await c.RoundTripAsync(CmdBlockStatus, 0, 1 << 20);
        Assert.Equal(0u, before.Error);
        Assert.Equal((id, 65536u, 1u), before.Extents[0]);

        await h.Server.DeleteSnapshotAsync("tue", force: false).WaitAsync(RawNbdClient.Watchdog);
        var deleted = await c.RoundTripAsync(CmdBlockStatus, 0, 1 << 20);
        Assert.Equal(EINVAL, deleted.Error);
        Assert.Empty(deleted.Extents);

        // A different snapshot under the same name: the selected context must fail the same way, never answer "clean".
        await h.Server.CreateSnapshotAsync("tue").WaitAsync(RawNbdClient.Watchdog);
        var replaced = await c.RoundTripAsync(CmdBlockStatus, 0, 1 << 20);
        Assert.True(replaced.Error == EINVAL, $"BLOCK_STATUS after the snapshot was replaced: error {replaced.Error}, extents [{string.Join(", ", replaced.Extents)}]");
        Assert.Empty(replaced.Extents);
        Assert.Contains("no snapshot named 'tue' as selected", replaced.Message);

        // Still so after a write (a new map of the new snapshot has something to say).
        await c.WriteAsync(1 << 20, Fill(4096, 0x32));
        Assert.Equal(EINVAL, (await c.RoundTripAsync(CmdBlockStatus, 0, 2 << 20)).Error);
        Assert.True(h.Log.Contains("qemu:dirty-bitmap:tue: "), "the failed BLOCK_STATUS was not logged");

        // A context selected now is bound to the new snapshot: the old write is not a change since it, the new one is.
        await using var fresh = await h.OpenAsync("origin", structured: true, "qemu:dirty-bitmap:tue");
        uint freshId = fresh.Contexts["qemu:dirty-bitmap:tue"];
        var now = await fresh.RoundTripAsync(CmdBlockStatus, 0, 2 << 20);
        Assert.Equal(0u, now.Error);
        Assert.Equal([(freshId, 1u << 20, 0u), (freshId, 4096u, 1u), (freshId, (1u << 20) - 4096, 0u)], now.Extents);
    }

    [Fact]
    public async Task On_a_snapshot_export_a_bitmap_of_a_replaced_older_snapshot_fails_too()
    {
        await using var h = await NbdHarness.StartAsync();
        await h.Server.CreateSnapshotAsync("a").WaitAsync(RawNbdClient.Watchdog);
        await h.Server.CreateSnapshotAsync("b").WaitAsync(RawNbdClient.Watchdog);
        await using var c = await h.OpenAsync("b", structured: true, "qemu:dirty-bitmap:a");
        await c.WriteAsync(0, Fill(4096, 7)); // b's own write: a change from a to b
        Assert.Equal(0u, (await c.RoundTripAsync(CmdBlockStatus, 0, 1 << 20)).Error);

        // Replaced without a query in between; the new 'a' is newer than 'b', so by name it would not even be served.
        await h.Server.DeleteSnapshotAsync("a", force: false).WaitAsync(RawNbdClient.Watchdog);
        await h.Server.CreateSnapshotAsync("a").WaitAsync(RawNbdClient.Watchdog);
        var r = await c.RoundTripAsync(CmdBlockStatus, 0, 1 << 20);
        Assert.Equal(EINVAL, r.Error);
        Assert.Empty(r.Extents);
    }
}
