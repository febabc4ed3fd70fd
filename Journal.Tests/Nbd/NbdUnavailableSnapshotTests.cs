using Journal.Tests.Tools;
using Snapshot;
using Snapshot.Nbd;
using static Snapshot.Nbd.NbdProtocol;

namespace Journal.Tests.Nbd;

/// <summary>
/// While a snapshot is unavailable (its COW file missing at open, <see cref="CowUnreadablePolicy.KeepSnapshot"/>), the
/// server offers the origin read-only and answers a write with EPERM and the reason, the other snapshots stay
/// writable, and once the snapshot is deleted a new connection gets a writable origin.
/// </summary>
public sealed class NbdUnavailableSnapshotTests
{
    [Fact]
    public async Task The_origin_is_served_read_only_while_a_snapshot_is_unavailable()
    {
        using var folder = new TempFolder();
        string path = folder["store"];
        await using (var s = await SnapshotStore.CreateAsync(path, new StoreOptions { OriginSectors = 2048 }))
        {
            await s.CreateSnapshotAsync("bad");
            await s.CreateSnapshotAsync("good");
        }
        File.Delete(Path.Combine(path, "bad.cow"));

        var store = await SnapshotStore.OpenAsync(path);
        var server = await NbdServer.StartAsync(store, new NbdServerOptions { UnixSockets = [folder["nbd.sock"]], ShutdownGrace = TimeSpan.FromSeconds(2) });
        try
        {
            await using (var c = await RawNbdClient.ConnectAsync(folder["nbd.sock"]))
            {
                await c.NegotiateAsync("origin", structured: true);
                Assert.NotEqual(0, c.TransmissionFlags & TxReadOnly);
                var r = await c.RoundTripAsync(CmdWrite, 0, 4096, new byte[4096]);
                Assert.Equal(EPERM, r.Error);
                Assert.Equal(new byte[4096], await c.ReadAsync(0, 4096));
            }
            await using (var c = await RawNbdClient.ConnectAsync(folder["nbd.sock"]))
            {
                await c.NegotiateAsync("good", structured: true);
                Assert.Equal(0, c.TransmissionFlags & TxReadOnly);
                var data = Enumerable.Repeat((byte)0x5a, 4096).ToArray();
                await c.WriteAsync(0, data);
                Assert.Equal(data, await c.ReadAsync(0, 4096));
            }

            await store.DeleteSnapshotAsync("bad");
            await using (var c = await RawNbdClient.ConnectAsync(folder["nbd.sock"]))
            {
                await c.NegotiateAsync("origin", structured: true);
                Assert.Equal(0, c.TransmissionFlags & TxReadOnly);
                var data = Enumerable.Repeat((byte)0x6b, 4096).ToArray();
                await c.WriteAsync(0, data);
                Assert.Equal(data, await c.ReadAsync(0, 4096));
            }
        }
        finally
        {
            await server.DisposeAsync().AsTask().WaitAsync(RawNbdClient.Watchdog);
            await store.CloseAsync().AsTask().WaitAsync(RawNbdClient.Watchdog);
        }
    }
}
