using System.Net.Sockets;
using Journal.Tests.Tools;

namespace Journal.Tests.Nbd;

/// <summary>
/// <c>snapctl serve</c>'s limit options reach the server (each seen in what the server then does and logs), and a bad
/// value is a usage error (exit 64, one line) found before the store is opened.
/// </summary>
public sealed class ServeLimitOptionsTests
{
    [Fact]
    public async Task The_handshake_timeout_and_the_negotiating_bound_are_the_ones_given()
    {
        using var dir = new TempFolder();
        string store = dir["store"];
        Assert.Equal(0, ToolRunner.SnapCtl("init", store, "--origin-size", "1M").ExitCode);
        using var serve = await ServeProcess.StartAsync(store, dir["nbd.sock"], tcp: false,
            "--handshake-timeout", "1.5", "--max-connections", "8", "--max-negotiating", "1",
            "--max-requests-per-connection", "4", "--max-bytes-per-connection", "32M", "--max-bytes-in-flight", "64M", "--stalled-client-timeout", "5");

        // Two clients that connect and say nothing: with one negotiating place, the second takes the first's place.
        using var first = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        await first.ConnectAsync(new UnixDomainSocketEndPoint(serve.Socket));
        await serve.Process.WaitForLineAsync(l => l.Contains("connection #", StringComparison.Ordinal) && l.Contains("opened", StringComparison.Ordinal), ServeProcess.Watchdog);
        using var second = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        await second.ConnectAsync(new UnixDomainSocketEndPoint(serve.Socket));
        var madeRoom = await serve.Process.WaitForLineAsync(l => l.Contains("to make room for a new connection", StringComparison.Ordinal), ServeProcess.Watchdog);
        Assert.Contains("1 connections were negotiating", madeRoom);
        // The second never finishes its handshake: closed after the 1.5 s given, not the default 10 s.
        await serve.Process.WaitForLineAsync(l => l.Contains("handshake not finished within 1.5 s", StringComparison.Ordinal), ServeProcess.Watchdog);

        // A real client still gets through, with the per-connection limits in force.
        var info = await ExternalTools.RunAsync("nbdinfo", [serve.Uri()]);
        Assert.True(info.ExitCode == 0, info.ToString());
        Assert.Equal(0, await serve.StopAsync());
    }

    [Theory]
    [InlineData("--max-bytes-in-flight", "1M", "server-wide in-flight byte bound 1048576 must be at least 33554432")]
    [InlineData("--max-bytes-per-connection", "4M", "in-flight byte bound 4194304 must be at least 33554432")]
    [InlineData("--max-requests-per-connection", "0", "in-flight request bound 0 must be at least 1")]
    [InlineData("--max-negotiating", "9", "negotiating-connection bound 9 must be at least 1 and at most --max-connections 8")]
    [InlineData("--handshake-timeout", "0", "--handshake-timeout: 0 must be more than 0")]
    [InlineData("--stalled-client-timeout", "-3", "--stalled-client-timeout: -3 must be more than 0")]
    [InlineData("--stalled-client-timeout", "soon", "soon")]
    public void A_bad_limit_is_a_usage_error_before_the_store_is_opened(string option, string value, string message)
    {
        using var dir = new TempFolder();
        // No store at all: the limits are checked first, so the error is about them, not the folder.
        var r = ToolRunner.SnapCtl("serve", dir["missing-store"], "--socket", dir["nbd.sock"], "--max-connections", "8", option, value);
        Assert.True(r.ExitCode == 64, r.ToString());
        Assert.Contains(message, r.Stderr);
        Assert.False(File.Exists(dir["nbd.sock"]));
    }
}
