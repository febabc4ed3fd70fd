using System.Net.Sockets;
using Snapshot.Nbd;

namespace Journal.Tests.Nbd;

/// <summary>
/// Connections still negotiating have their own bound, below the connection limit: connections that connect and send
/// nothing hold at most that many places, and a well-behaved client arriving while they are held negotiates and reads
/// at once (the connection that has negotiated longest is closed to make room), so idle connects cannot lock clients
/// out, not even by reconnecting as soon as they are closed.
/// </summary>
[System.Runtime.Versioning.UnsupportedOSPlatform("windows")]
public sealed class NbdHandshakeLimitTests
{
    private const int Idle = 300;            // more than the default connection limit (256)
    private const int DefaultBound = 256 / 4; // a quarter of it

    private static byte[] Pattern(int n, int seed)
    {
        var b = new byte[n];
        new Random(seed).NextBytes(b);
        return b;
    }

    /// <summary>True once the server has closed <paramref name="s"/>: what it sent (the greeting) is read and then the end of the stream, or a reset.</summary>
    private static bool ClosedByServer(Socket s)
    {
        var b = new byte[64];
        try
        {
            while (s.Poll(0, SelectMode.SelectRead))
                if (s.Receive(b) == 0) return true;
            return false;
        }
        catch (Exception e) when (e is SocketException or ObjectDisposedException)
        {
            return true;
        }
    }

    private static async Task WriteAndReadBackAsync(NbdHarness h, int seed)
    {
        await using var good = await h.OpenAsync();
        var data = Pattern(65536, seed);
        await good.WriteAsync((ulong)seed << 16, data).WaitAsync(RawNbdClient.Watchdog);
        Assert.Equal(data, await good.ReadAsync((ulong)seed << 16, 65536).WaitAsync(RawNbdClient.Watchdog));
        await good.DisconnectAsync();
    }

    [Fact]
    public async Task Idle_connections_that_send_nothing_hold_at_most_the_negotiating_bound_and_a_well_behaved_client_is_served()
    {
        await using var h = await NbdHarness.StartAsync();
        var idle = new List<Socket>();
        try
        {
            for (int i = 0; i < Idle; i++) idle.Add((await h.ConnectAsync()).Socket);

            // A well-behaved client negotiates, writes and reads while the idle connections are open (the watchdog of
            // every receive fails the test if it is kept waiting; a refused connection fails it at once).
            for (int round = 0; round < 3; round++) await WriteAndReadBackAsync(h, round);

            // The idle connections hold at most the negotiating bound: the server closed the others.
            await NbdHarness.EventuallyAsync(() => h.Server.ConnectionCount <= DefaultBound, "the server holding at most the negotiating bound");
            await NbdHarness.EventuallyAsync(() => idle.Count(ClosedByServer) >= Idle - DefaultBound, "the idle connections past the bound closed");
            Assert.InRange(h.Server.NegotiatingCount, 0, DefaultBound);
            Assert.True(h.Log.Contains($"{DefaultBound} connections were negotiating"));
        }
        finally
        {
            foreach (var s in idle) s.Dispose();
        }
        await NbdHarness.EventuallyAsync(() => h.Server.ConnectionCount == 0, "every idle connection closed");
        Assert.Equal(0, h.Server.NegotiatingCount);
        await WriteAndReadBackAsync(h, 7);
    }

    [Fact]
    public async Task Idle_connections_reconnecting_as_soon_as_they_are_closed_do_not_lock_out_a_well_behaved_client()
    {
        await using var h = await NbdHarness.StartAsync();
        using var stop = new CancellationTokenSource();
        int peak = 0;
        long reconnects = 0;
        // The attacker: Idle connections that send nothing; each one the server closes is opened again at once, up to
        // 5 every 20 ms (about 250 a second). Each newcomer closes the connection that has negotiated longest, so a client
        // has the time of DefaultBound newcomers (about 256 ms here) to send its flags: at a thousand a second (64 ms)
        // a test client of this process, sharing 2 busy cores with the rest of the suite, was once closed before it had
        // read the greeting.
        var attacker = Task.Run(async () =>
        {
            var socks = new List<Socket>();
            try
            {
                while (!stop.IsCancellationRequested)
                {
                    int again = 0;
                    for (int i = 0; i < socks.Count && again < 5; i++)
                    {
                        if (!ClosedByServer(socks[i])) continue;
                        socks[i].Dispose();
                        socks[i] = (await h.ConnectAsync()).Socket;
                        again++;
                        reconnects++;
                    }
                    while (socks.Count < Idle) socks.Add((await h.ConnectAsync()).Socket);
                    peak = Math.Max(peak, h.Server.NegotiatingCount);
                    // Why we wait: the attacker's rate (5 reconnects every 20 ms).
                    await Task.Delay(20);
                }
            }
            finally
            {
                foreach (var s in socks) s.Dispose();
            }
        });
        try
        {
            await NbdHarness.EventuallyAsync(() => h.Server.NegotiatingCount == DefaultBound, "the attacker holding every negotiating place");
            for (int round = 0; round < 20; round++) await WriteAndReadBackAsync(h, round);
        }
        finally
        {
            stop.Cancel();
            await attacker.WaitAsync(RawNbdClient.Watchdog);
        }
        Assert.InRange(peak, 0, DefaultBound);
        Assert.True(Interlocked.Read(ref reconnects) > 0);
        await NbdHarness.EventuallyAsync(() => h.Server.ConnectionCount == 0, "every attacking connection closed");
        await WriteAndReadBackAsync(h, 31);
    }

    /// <summary>
    /// A connection leaves the negotiating set before the reply that gives it its export goes out: a client that has
    /// that reply is never closed to make room (it would see its first I/O fail). With a bound of one, each newcomer
    /// closes whoever still negotiates.
    /// </summary>
    [Fact]
    public async Task A_client_that_has_its_export_is_never_closed_to_make_room()
    {
        await using var h = await NbdHarness.StartAsync(maxNegotiatingConnections: 1);
        for (int i = 0; i < 40; i++)
        {
            await NbdHarness.EventuallyAsync(() => h.Server.NegotiatingCount == 0, "the last newcomer gone");
            await using var c = await h.OpenAsync();
            Assert.Equal(0, h.Server.NegotiatingCount);
            await using var newcomer = await h.ConnectAsync();
            var data = Pattern(4096, i);
            await c.WriteAsync(0, data).WaitAsync(RawNbdClient.Watchdog);
            Assert.Equal(data, await c.ReadAsync(0, 4096).WaitAsync(RawNbdClient.Watchdog));
        }
        Assert.False(h.Log.Contains("to make room"));
    }

    [Fact]
    public async Task A_connection_that_does_not_finish_its_handshake_in_time_is_closed()
    {
        await using var h = await NbdHarness.StartAsync(handshakeTimeout: TimeSpan.FromMilliseconds(300));
        await using var c = await h.ConnectAsync();
        Assert.True(await c.ServerClosesAsync());
        Assert.True(h.Log.Contains("handshake not finished within 0.3 s"));
        await NbdHarness.EventuallyAsync(() => h.Server.ConnectionCount == 0 && h.Server.NegotiatingCount == 0, "the connection closed");
    }

    [Fact]
    public void The_negotiating_bound_defaults_to_a_quarter_of_the_connections_is_validated_and_shown()
    {
        NbdServerOptions Options(int max, int? negotiating) => new()
        {
            UnixSockets = ["/tmp/x.sock"], MaxConnections = max, MaxNegotiatingConnections = negotiating,
        };
        Assert.Equal(TimeSpan.FromSeconds(10), new NbdServerOptions().HandshakeTimeout);
        Assert.Null(new NbdServerOptions().MaxNegotiatingConnections);
        Assert.Equal(64, Options(256, null).NegotiatingBound);
        Assert.Equal(1, Options(3, null).NegotiatingBound);
        Assert.Equal(5, Options(8, 5).NegotiatingBound);
        Options(8, 8).Validate();
        Options(8, 1).Validate();
        foreach (int bad in new[] { 0, -1, 9 })
        {
            var e = Assert.Throws<global::Snapshot.SnapshotArgumentException>(() => Options(8, bad).Validate());
            Assert.Contains($"negotiating-connection bound {bad} must be at least 1 and at most --max-connections 8", e.Message);
        }
        Assert.Contains("max connections 256, negotiating at most 64 (a quarter),", Options(256, null).ToString());
        Assert.Contains("max connections 8, negotiating at most 5,", Options(8, 5).ToString());
        Assert.Contains("handshake timeout 10 s", Options(8, 5).ToString());
    }
}
