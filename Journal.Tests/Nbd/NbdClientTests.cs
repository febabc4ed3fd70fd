using System.Text.Json;
using Journal.Tests.Tools;
using static Journal.Tests.Nbd.ExternalTools;
using static Snapshot.Nbd.NbdProtocol;

namespace Journal.Tests.Nbd;

/// <summary>
/// <c>snapctl serve</c> as a real process, used by real NBD clients nobody here wrote (qemu-io, qemu-img, nbdinfo,
/// nbdcopy, fio), and managed live through the control socket with the same output and exit codes as offline.
/// Missing clients are installed; if they cannot be, these tests fail.
/// </summary>
[System.Runtime.Versioning.UnsupportedOSPlatform("windows")]
public sealed class NbdClientTests
{
    private static ToolResult SnapCtl(params string[] args) => ToolRunner.SnapCtl(args);

    private static void Ok(ToolResult r) => Assert.True(r.ExitCode == 0, r.ToString());

    private static string NewStore(TempFolder dir, string size = "64M")
    {
        string store = dir["store"];
        Ok(SnapCtl("init", store, "--origin-size", size));
        return store;
    }

    [Fact]
    public async Task Nbdinfo_lists_every_export_with_its_size_and_block_sizes_and_a_live_snapshot_at_once()
    {
        Require("nbdinfo");
        using var dir = new TempFolder();
        string store = NewStore(dir);
        Ok(SnapCtl("snapshot", "create", store, "monday"));
        using var serve = await ServeProcess.StartAsync(store, dir["nbd.sock"]);
        var exports = ListExports(serve);
        Assert.Equal(["origin", "monday"], exports.Select(e => e.GetProperty("export-name").GetString()));
        foreach (var e in exports)
        {
            Assert.Equal(64L << 20, e.GetProperty("export-size").GetInt64());
            Assert.Equal(512, e.GetProperty("block_size_minimum").GetInt32());
            Assert.Equal(4096, e.GetProperty("block_size_preferred").GetInt32());
            Assert.Equal(32 << 20, e.GetProperty("block_size_maximum").GetInt32());
            Assert.True(e.GetProperty("can_multi_conn").GetBoolean());
            Assert.True(e.GetProperty("can_flush").GetBoolean());
            Assert.True(e.GetProperty("can_fua").GetBoolean());
            Assert.Contains("base:allocation", e.GetProperty("contexts").EnumerateArray().Select(c => c.GetString()));
        }
        var created = await ToolProcess.RunAsync("snapctl", ["snapshot", "create", store, "tuesday"], ServeProcess.Watchdog);
        Assert.True(created.ExitCode == 0, created.ToString());
        Assert.Equal(["origin", "monday", "tuesday"], ListExports(serve).Select(e => e.GetProperty("export-name").GetString()));
        Assert.Equal(0, await serve.StopAsync());
    }

    private static List<JsonElement> ListExports(ServeProcess serve)
    {
        var r = Check("nbdinfo", "--list", "--json", $"nbd+unix:///?socket={serve.Socket}");
        using var doc = JsonDocument.Parse(r.Stdout);
        Assert.Equal("newstyle-fixed", doc.RootElement.GetProperty("protocol").GetString());
        Assert.True(doc.RootElement.GetProperty("structured").GetBoolean());
        return doc.RootElement.GetProperty("exports").EnumerateArray().Select(e => e.Clone()).ToList();
    }

    [Fact]
    public async Task Qemu_io_writes_patterns_and_qemu_img_compare_finds_the_snapshot_identical_to_a_copy_taken_before()
    {
        Require("qemu-io", "qemu-img", "nbdcopy");
        using var dir = new TempFolder();
        string store = NewStore(dir, "32M");
        Ok(SnapCtl("write", store, "--offset", "0", "--pattern", "0x11", "--length", "4M"));
        using var serve = await ServeProcess.StartAsync(store, dir["nbd.sock"], tcp: true);
        // A copy of the origin just before the writes, then a live snapshot.
        Check("nbdcopy", serve.Uri(), dir["before.img"]);
        var snap = await ToolProcess.RunAsync("snapctl", ["snapshot", "create", store, "pit"], ServeProcess.Watchdog);
        Assert.True(snap.ExitCode == 0, snap.ToString());

        var io = Check("qemu-io", "-f", "raw",
            "-c", "write -P 0xa5 0 64k",
            "-c", "write -P 0x5a 1M 1M",
            "-c", "write -P 0xc3 4092k 8k",        // across the end of the 0x11 area, over chunk boundaries
            "-c", "write -z 8M 1M",
            "-c", "write -P 0x77 -f 31M 1M",         // FUA
            "-c", "flush",
            "-c", "read -P 0xa5 0 64k",
            "-c", "read -P 0x11 64k 960k",
            "-c", "read -P 0x5a 1M 1M",
            "-c", "read -P 0xc3 4092k 8k",
            "-c", "read -P 0 8M 1M",
            "-c", "read -P 0x77 31M 1M",
            serve.Uri());
        Assert.DoesNotContain("Pattern verification failed", io.Output);
        // The same through TCP.
        Check("qemu-io", "-f", "raw", "-c", "read -P 0x5a 1M 1M", $"nbd://{serve.Tcp}/origin");

        var same = Run("qemu-img", ["compare", "-f", "raw", "-F", "raw", serve.Uri("pit"), dir["before.img"]]);
        Assert.True(same.ExitCode == 0, same.ToString());
        Assert.Contains("Images are identical", same.Stdout);
        // The comparison can tell: the origin now differs from the copy.
        var differ = Run("qemu-img", ["compare", "-f", "raw", "-F", "raw", serve.Uri(), dir["before.img"]]);
        Assert.True(differ.ExitCode == 1, differ.ToString());
        Assert.Equal(0, await serve.StopAsync());
    }

    [Fact]
    public async Task Nbdcopy_copies_a_snapshot_export_to_a_file()
    {
        Require("nbdcopy");
        using var dir = new TempFolder();
        string store = NewStore(dir, "16M");
        var data = new byte[16 << 20];
        new Random(5).NextBytes(data);
        File.WriteAllBytes(dir["data.bin"], data);
        Ok(SnapCtl("write", store, "--offset", "0", "--input", dir["data.bin"]));
        Ok(SnapCtl("snapshot", "create", store, "s"));
        using var serve = await ServeProcess.StartAsync(store, dir["nbd.sock"]);
        // Overwrite part of the origin through NBD, so the snapshot reads both COW chunks and origin chunks.
        Check("qemu-io", "-f", "raw", "-c", "write -P 0xee 2M 3M", serve.Uri());
        Check("nbdcopy", "--connections=4", serve.Uri("s"), dir["copy.img"]);
        Assert.Equal(data, File.ReadAllBytes(dir["copy.img"]));
        Assert.Equal(0, await serve.StopAsync());
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)] // snapctl serve --defer-writes: a write is answered before its origin write; reads must still see it
    public async Task Fio_random_writes_verify_on_four_connections_at_iodepth_32(bool deferWrites)
    {
        Require("fio");
        using var dir = new TempFolder();
        string store = NewStore(dir, "64M");
        Ok(SnapCtl("snapshot", "create", store, "s"));
        using var serve = await ServeProcess.StartAsync(store, dir["nbd.sock"], false, deferWrites ? ["--defer-writes"] : []);
        var r = Run("fio", ["--name=randwrite-verify", "--ioengine=nbd", $"--uri={serve.Uri()}", "--rw=randwrite", "--bs=4k",
            "--iodepth=32", "--numjobs=4", "--size=8M", "--offset_increment=16M", "--verify=crc32c", "--verify_fatal=1",
            "--group_reporting"], TimeSpan.FromMinutes(5));
        Assert.True(r.ExitCode == 0, r.ToString());
        Assert.Contains("err= 0", r.Stdout);
        Assert.DoesNotContain("verify: bad", r.Output);
        Assert.DoesNotContain("crc32c: verify failed", r.Output);
        if (deferWrites) Assert.True(DeferredWrites(store) > 0, "no write was deferred");
        Assert.Equal(0, await serve.StopAsync());
        Assert.DoesNotContain("   at ", serve.Process.Stderr);
    }

    [Fact]
    public async Task Live_commands_give_the_same_output_and_exit_codes_as_offline()
    {
        using var dir = new TempFolder();
        string store = NewStore(dir, "16M");
        string twin = dir["twin"];
        Ok(SnapCtl("init", twin, "--origin-size", "16M"));
        using var serve = await ServeProcess.StartAsync(store, dir["nbd.sock"]);
        string control = Path.Combine(store, "control.sock");
        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(control));

        async Task<ToolResult> Live(params string[] args) => await ToolProcess.RunAsync("snapctl", args, ServeProcess.Watchdog);
        ToolResult Offline(params string[] args) => SnapCtl(args);
        string Twin(string s) => s.Replace(twin, store, StringComparison.Ordinal);

        // Each command on the served store and on an identical closed store: the same stdout, stderr and exit code.
        foreach (var args in new[]
        {
            new[] { "snapshot", "create", "{}", "monday" },
            ["snapshot", "create", "{}", "small", "--cow-size", "1M"],
            ["status", "{}"],
            ["status", "{}", "--json"],
            ["snapshot", "create", "{}", "monday"],               // exists: 64
            ["snapshot", "create", "{}", "bad/name"],             // bad name: 64
            ["snapshot", "delete", "{}", "nope"],                 // missing: 66
            ["snapshot", "merge", "{}", "nope"],                  // missing: 66
            ["snapshot", "delete", "{}", "small"],
            ["snapshot", "merge", "{}", "monday"],
            ["status", "{}"],
        })
        {
            var live = await Live(args.Select(a => a == "{}" ? store : a).ToArray());
            var offline = Offline(args.Select(a => a == "{}" ? twin : a).ToArray());
            Assert.True(offline.ExitCode == live.ExitCode, $"{string.Join(' ', args)}: offline {offline}\nlive {live}");
            Assert.Equal(Twin(offline.Stdout), live.Stdout);
            Assert.Equal(Twin(offline.Stderr), live.Stderr);
        }
        Assert.Equal(0, await serve.StopAsync());
    }

    [Fact]
    public async Task Deleting_a_snapshot_in_use_fails_with_one_line_unless_forced()
    {
        using var dir = new TempFolder();
        string store = NewStore(dir, "16M");
        Ok(SnapCtl("snapshot", "create", store, "busy"));
        using var serve = await ServeProcess.StartAsync(store, dir["nbd.sock"]);
        await using var client = await RawNbdClient.ConnectAsync(serve.Socket);
        await client.NegotiateAsync("busy");
        var refused = await ToolProcess.RunAsync("snapctl", ["snapshot", "delete", store, "busy"], ServeProcess.Watchdog);
        Assert.Equal(2, refused.ExitCode);
        Assert.Equal($"snapctl: {store}: snapshot 'busy' is in use by 1 connection; --force disconnects them", refused.Stderr.Trim());
        var merge = await ToolProcess.RunAsync("snapctl", ["snapshot", "merge", store, "busy"], ServeProcess.Watchdog);
        Assert.Equal(2, merge.ExitCode);
        Assert.Contains("in use by 1 connection", merge.Stderr);
        Assert.Equal(new byte[512], await client.ReadAsync(0, 512));
        var forced = await ToolProcess.RunAsync("snapctl", ["snapshot", "delete", store, "busy", "--force"], ServeProcess.Watchdog);
        Assert.True(forced.ExitCode == 0, forced.ToString());
        Assert.Equal("deleted snapshot busy\n", forced.Stdout);
        Assert.True(await client.ServerClosesAsync());
        Assert.Equal(0, await serve.StopAsync());
        Assert.Contains("disconnected by the server: snapshot deleted", serve.Process.Stderr);
    }

    [Fact]
    public async Task A_control_socket_open_to_others_is_refused()
    {
        using var dir = new TempFolder();
        string store = NewStore(dir, "16M");
        using var serve = await ServeProcess.StartAsync(store, dir["nbd.sock"]);
        string control = Path.Combine(store, "control.sock");
        File.SetUnixFileMode(control, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.OtherRead | UnixFileMode.OtherWrite);
        var r = await ToolProcess.RunAsync("snapctl", ["status", store], ServeProcess.Watchdog);
        Assert.Equal(2, r.ExitCode);
        Assert.Contains("control socket has mode 0606", r.Stderr);
        Assert.Single(r.Stderr.Trim().Split('\n'));
        Assert.Equal(0, await serve.StopAsync());
    }

    [Theory]
    [InlineData(ToolProcess.SigTerm, "SIGTERM")]
    [InlineData(ToolProcess.SigInt, "SIGINT")]
    public async Task A_signal_finishes_requests_flushes_closes_the_store_cleanly_and_exits_0(int signal, string name)
    {
        using var dir = new TempFolder();
        string store = NewStore(dir, "16M");
        using var serve = await ServeProcess.StartAsync(store, dir["nbd.sock"]);
        await using (var c = await RawNbdClient.ConnectAsync(serve.Socket))
        {
            await c.NegotiateAsync();
            await c.WriteAsync(0, Enumerable.Repeat((byte)0x3c, 65536).ToArray());
        }
        Assert.Equal(0, await serve.StopAsync(signal));
        Assert.Contains($"{name}: stopping", serve.Process.Stderr);
        Assert.Contains("closed cleanly", serve.Process.Stderr);
        Assert.DoesNotContain("   at ", serve.Process.Stderr);
        Assert.False(File.Exists(dir["nbd.sock"]));
        Assert.False(File.Exists(Path.Combine(store, "control.sock")));
        var check = ToolRunner.JReplay("check", store);
        Assert.True(check.ExitCode == 0, check.ToString());
        var read = SnapCtl("read", store, "--offset", "0", "--length", "64K");
        Assert.All(read.Raw, b => Assert.Equal(0x3c, b));
    }

    /// <summary><c>copies.deferred_writes</c> of a live <c>snapctl status --json</c> (the serving process's count).</summary>
    private static long DeferredWrites(string store)
    {
        var status = SnapCtl("status", store, "--json");
        Assert.True(status.ExitCode == 0, status.ToString());
        using var doc = System.Text.Json.JsonDocument.Parse(status.Stdout);
        return doc.RootElement.GetProperty("copies").GetProperty("deferred_writes").GetInt64();
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)] // snapctl serve --defer-writes: the FLUSH must wait for the deferred origin writes
    public async Task Writes_acknowledged_before_an_acknowledged_FLUSH_survive_SIGKILL_of_the_server(bool deferWrites)
    {
        using var dir = new TempFolder();
        string store = NewStore(dir, "32M");
        Ok(SnapCtl("write", store, "--offset", "0", "--pattern", "0x11", "--length", "32M"));
        Ok(SnapCtl("snapshot", "create", store, "s"));
        var acknowledged = new List<(ulong Offset, byte[] Data)>();
        var toSnapshot = new List<(ulong Offset, byte[] Data)>();
        var random = new Random(11);
        using (var serve = await ServeProcess.StartAsync(store, dir["nbd.sock"], false, deferWrites ? ["--defer-writes"] : []))
        {
            await using var a = await RawNbdClient.ConnectAsync(serve.Socket);
            await a.NegotiateAsync();
            await using var b = await RawNbdClient.ConnectAsync(serve.Socket);
            await b.NegotiateAsync("s");
            if (deferWrites)
            {
                // The option is on: a first write is deferred (checked now, not before the kill, which must follow the
                // FLUSH at once).
                var first = new byte[4096];
                random.NextBytes(first);
                await a.WriteAsync(0, first);
                acknowledged.Add((0, first));
                Assert.True(DeferredWrites(store) > 0, "no write was deferred");
            }
            for (int i = 0; i < 200; i++)
            {
                var data = new byte[4096 * (1 + i % 4)];
                random.NextBytes(data);
                ulong offset = (ulong)random.Next(0, (32 << 20) / 4096 - 4) * 4096;
                await (i % 5 == 0 ? b : a).WriteAsync(offset, data);
                (i % 5 == 0 ? toSnapshot : acknowledged).Add((offset, data));
            }
            await b.FlushAsync(); // on the other connection: covers a's writes too
            await serve.KillAsync(); // at once: deferred origin writes not yet issued would die with the process
        }
        using (var again = await ServeProcess.StartAsync(store, dir["nbd.sock"]))
        {
            Assert.Contains("journal was replayed", again.Process.Stderr);
            await using var c = await RawNbdClient.ConnectAsync(again.Socket);
            await c.NegotiateAsync();
            // Later writes win; check each region against the last acknowledged write covering it.
            var expected = new byte[32 << 20];
            expected.AsSpan().Fill(0x11);
            foreach (var (offset, data) in acknowledged) data.CopyTo(expected, (int)offset);
            for (int m = 0; m < 32; m++) Assert.Equal(expected.AsSpan(m << 20, 1 << 20).ToArray(), await c.ReadAsync((ulong)m << 20, 1 << 20));
            Assert.Equal(0, await again.StopAsync());
        }
        // The snapshot holds what the origin held when it was taken, plus its own acknowledged writes.
        var snap = SnapCtl("read", store, "--snapshot", "s", "--offset", "0", "--length", "32M");
        Assert.True(snap.ExitCode == 0, snap.ToString());
        var expectedSnap = new byte[32 << 20];
        expectedSnap.AsSpan().Fill(0x11);
        foreach (var (offset, data) in toSnapshot) data.CopyTo(expectedSnap, (int)offset);
        Assert.True(expectedSnap.AsSpan().SequenceEqual(snap.Raw), "the snapshot differs from its point-in-time data plus its writes");
    }
}
