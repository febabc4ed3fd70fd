using System.Net.Sockets;
using Snapshot.Nbd;
using static Snapshot.Nbd.NbdProtocol;

namespace Journal.Tests.Nbd;

/// <summary>
/// The server-wide bound on payload bytes in flight (<see cref="NbdServerOptions.MaxServerBytesInFlight"/>): many
/// connections that pipeline large reads and never read a reply keep the server's accounted bytes, and the buffers it
/// allocates, within the bound, while a well-behaved client is still served; clients that hold room while others wait
/// are disconnected after the stalled-client timeout, and their buffers come back.
/// </summary>
[System.Runtime.Versioning.UnsupportedOSPlatform("windows")]
public sealed class NbdServerBudgetTests
{
    private static byte[] Pattern(int n, int seed)
    {
        var b = new byte[n];
        new Random(seed).NextBytes(b);
        return b;
    }

    [Fact]
    public async Task Many_connections_pipelining_large_reads_without_reading_replies_stay_within_the_server_budget_and_others_are_served()
    {
        const long Budget = 96L << 20;  // three 32 MiB reads
        const int Stuck = 12;           // each may have 64 MiB in flight on its own: 768 MiB without the server bound
        await using var h = await NbdHarness.StartAsync(originBytes: 64 << 20, maxServerBytesInFlight: Budget,
            stalledClientTimeout: TimeSpan.FromSeconds(1));
        var stuck = new List<RawNbdClient>();
        var pushing = new List<Task>();
        for (int i = 0; i < Stuck; i++)
        {
            var c = await h.OpenAsync();
            c.Socket.ReceiveBufferSize = 4096;
            stuck.Add(c);
            pushing.Add(Task.Run(async () =>
            {
                try
                {
                    for (int k = 0; k < 64; k++) await c.SendRequestAsync(CmdRead, (ulong)(k % 2) << 25, 32 << 20, watchdog: false);
                }
                catch (Exception e) when (e is SocketException or ObjectDisposedException or OperationCanceledException) { }
            }));
        }
        await NbdHarness.EventuallyAsync(() => h.Server.Room.Waits > 0 || h.Server.Buffers.InUseBytes > Budget,
            "a connection waiting for room under the server's bound");
        Assert.InRange(h.Server.Buffers.InUseBytes, 0, Budget);

        // A well-behaved client doing small I/O is served meanwhile, from the reserve large requests cannot take.
        await using (var good = await h.OpenAsync())
        {
            for (int i = 0; i < 5; i++)
            {
                await good.WriteAsync((ulong)i << 16, Pattern(65536, i)).WaitAsync(RawNbdClient.Watchdog);
                Assert.Equal(Pattern(65536, i), await good.ReadAsync((ulong)i << 16, 65536).WaitAsync(RawNbdClient.Watchdog));
                Assert.InRange(h.Server.Room.Bytes, 0, Budget);
            }
        }
        // The clients holding the room without reading are disconnected once a request has waited the stalled-client
        // timeout (1 s here), and one with a large request is served then.
        await NbdHarness.EventuallyAsync(() => h.Server.StalledDisconnects > 0, "a stalled client disconnected");
        Assert.True(h.Log.Contains("disconnecting: its client took no reply"), "the disconnection was not logged");
        await using (var large = await h.OpenAsync())
            Assert.Equal(32 << 20, (await large.ReadAsync(0, 32 << 20).WaitAsync(RawNbdClient.Watchdog)).Length);

        foreach (var c in stuck) c.Socket.Dispose();
        await Task.WhenAll(pushing).WaitAsync(RawNbdClient.Watchdog);
        await NbdHarness.EventuallyAsync(() => h.Server.ConnectionCount == 0, "the stuck connections closing");

        // The counters: what was accounted never passed the bound, and neither did the buffers lent out at once (besides
        // payload buffers the pool lends only a 64 KiB scratch per connection dropping a refused WRITE's data: none here);
        // everything came back, and the pool keeps at most the bound.
        Assert.InRange(h.Server.Room.PeakBytes, 32L << 20, Budget);
        Assert.InRange(h.Server.Buffers.PeakInUseBytes, 32L << 20, Budget);
        Assert.Equal(0, h.Server.Room.Bytes);
        Assert.Equal(0, h.Server.Buffers.InUseBytes);
        Assert.InRange(h.Server.Buffers.RetainedBytes, 0, Budget);
    }

    [Fact]
    public async Task A_client_that_takes_its_large_replies_slowly_but_steadily_is_not_disconnected_while_others_wait()
    {
        const long Budget = 64L << 20; // one 32 MiB read of the slow client's two fits (large requests leave the top eighth)
        await using var h = await NbdHarness.StartAsync(originBytes: 64 << 20, maxServerBytesInFlight: Budget,
            stalledClientTimeout: TimeSpan.FromSeconds(1));
        var slow = await h.OpenAsync();
        slow.Socket.ReceiveBufferSize = 4096;
        for (int k = 0; k < 2; k++) await slow.SendRequestAsync(CmdRead, (ulong)k << 25, 32 << 20, watchdog: false);
        await NbdHarness.EventuallyAsync(() => h.Server.Room.Bytes >= 32L << 20 && h.Server.Room.Waits > 0, "the slow client's reads holding the room");

        // Another client waits for room for a large read, far longer than the timeout, while the slow one takes its
        // replies at about 10 MB/s: each 32 MiB reply takes some 3 s to go out, but it is never stalled.
        var waiting = await h.OpenAsync();
        var large = waiting.ReadAsync(0, 32 << 20);
        long taken = 0;
        var chunk = new byte[1 << 20];
        var deadline = DateTime.UtcNow + RawNbdClient.Watchdog;
        while (taken < 2L * (32 << 20))
        {
            Assert.True(DateTime.UtcNow < deadline, $"took only {taken} bytes");
            int n = await slow.Socket.ReceiveAsync(chunk.AsMemory(), SocketFlags.None).AsTask().WaitAsync(RawNbdClient.Watchdog);
            Assert.True(n > 0, $"the server closed the slow client after {taken} bytes");
            taken += n;
            await Task.Delay(n * 100 / chunk.Length);
        }
        Assert.Equal(32 << 20, (await large.WaitAsync(RawNbdClient.Watchdog)).Length);
        Assert.Equal(0, h.Server.StalledDisconnects);
        slow.Socket.Dispose();
        await waiting.DisposeAsync();
    }

    [Fact]
    public async Task Writes_give_their_buffers_back_once_written_even_when_the_client_reads_no_reply()
    {
        const long Budget = 32L << 20;
        await using var h = await NbdHarness.StartAsync(originBytes: 64 << 20, maxServerBytesInFlight: Budget);
        await using var stuck = await h.OpenAsync();
        stuck.Socket.ReceiveBufferSize = 4096;
        var block = Pattern(1 << 20, 9);
        // A 16 MiB READ whose reply the client does not take holds the sender, so no reply goes out after it; then 48 MiB
        // of writes, more than the server's bound (and within the connection's 64 requests). Each write's buffer comes back once its data is written, not when its
        // reply is sent, so they all go through.
        await stuck.SendRequestAsync(CmdRead, 0, 16 << 20).WaitAsync(RawNbdClient.Watchdog);
        for (int i = 0; i < 48; i++) await stuck.SendRequestAsync(CmdWrite, (ulong)i << 20, 1 << 20, block).WaitAsync(RawNbdClient.Watchdog);
        await NbdHarness.EventuallyAsync(() => h.Server.Counters.Writes == 48 && h.Server.Room.Bytes == 16 << 20, "every write done and its bytes given back");
        Assert.InRange(h.Server.Room.PeakBytes, 17 << 20, Budget);
        var first = await stuck.ReadReplyAsync().WaitAsync(RawNbdClient.Watchdog);
        Assert.Equal(16 << 20, first.Data!.Length);
        for (int i = 0; i < 48; i++) Assert.Equal(0u, (await stuck.ReadReplyAsync().WaitAsync(RawNbdClient.Watchdog)).Error);
        await NbdHarness.EventuallyAsync(() => h.Server.Room.Bytes == 0, "the read's bytes given back");
        Assert.Equal(0, h.Server.StalledDisconnects);
    }

    [Fact]
    public void The_server_bound_must_hold_one_largest_request_and_the_stalled_timeout_must_be_positive()
    {
        NbdServerOptions Options(long bytes, double seconds) => new()
        {
            UnixSockets = ["/tmp/x.sock"], MaxServerBytesInFlight = bytes, StalledClientTimeout = TimeSpan.FromSeconds(seconds),
        };
        Options(NbdServerOptions.MaxRequestBytes, 1).Validate();
        Assert.Equal(256L << 20, new NbdServerOptions().MaxServerBytesInFlight);
        Assert.Equal(TimeSpan.FromSeconds(30), new NbdServerOptions().StalledClientTimeout);
        var small = Assert.Throws<global::Snapshot.SnapshotArgumentException>(() => Options(NbdServerOptions.MaxRequestBytes - 512, 1).Validate());
        Assert.Contains("server-wide in-flight byte bound", small.Message);
        Assert.Throws<global::Snapshot.SnapshotArgumentException>(() => Options(NbdServerOptions.MaxRequestBytes, 0).Validate());
        Assert.Contains("in flight on all connections 33554432 bytes, stalled-client timeout 1 s", Options(NbdServerOptions.MaxRequestBytes, 1).ToString());
    }

    [Fact]
    public async Task A_wait_that_is_granted_leaves_no_timer_armed()
    {
        // A long stalled-client timeout: a wait's timer, if it outlived the grant, would stay armed for ten minutes.
        var budget = new NbdServerBudget(64L << 20, TimeSpan.FromMinutes(10), server: null);
        for (int i = 0; i < 64; i++) // filled to the bound in requests small enough to use its reserve
            Assert.True(await budget.AcquireAsync(1L << 20, CancellationToken.None).AsTask().WaitAsync(RawNbdClient.Watchdog));
        Assert.Equal(64L << 20, budget.Bytes);
        const int Waits = 5000;
        long before = Timer.ActiveCount;
        for (int i = 0; i < Waits; i++)
        {
            var wait = budget.AcquireAsync(4096, CancellationToken.None); // the budget is full: this waits
            Assert.False(wait.IsCompleted);
            budget.Release(4096);                                        // room for it: granted
            Assert.True(await wait.AsTask().WaitAsync(RawNbdClient.Watchdog));
        }
        Assert.Equal(Waits, budget.Waits);
        long armed = Timer.ActiveCount - before;
        Assert.True(armed < Waits / 2, $"{armed} timers still armed after {Waits} granted waits");
    }
}
