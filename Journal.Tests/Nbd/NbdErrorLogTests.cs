using System.Text;
using static Snapshot.Nbd.NbdProtocol;

namespace Journal.Tests.Nbd;

/// <summary>
/// Every error reply is also one log line and one count of <c>nbd.request.errors</c>, including the ones decided deep in
/// a command (not only by the checks before it runs) — up to 10 a connection, past which they are counted, not logged;
/// text a client supplies reaches the log escaped and cut short.
/// </summary>
[System.Runtime.Versioning.UnsupportedOSPlatform("windows")]
public sealed class NbdErrorLogTests
{
    [Fact]
    public async Task Block_status_of_length_zero_at_the_end_of_the_export_is_an_error_that_is_logged_and_counted()
    {
        const long Size = 16 << 20;
        await using var h = await NbdHarness.StartAsync(originBytes: Size);
        await using var c = await h.OpenAsync("origin", structured: true, BaseAllocation);
        long errorsBefore = h.Server.Counters.Errors;
        int linesBefore = h.Log.Count("BLOCK_STATUS at the end of the export");

        var r = await c.RoundTripAsync(CmdBlockStatus, Size, 0);
        Assert.Equal(EINVAL, r.Error);
        Assert.Empty(r.Extents);

        Assert.Equal(errorsBefore + 1, h.Server.Counters.Errors);
        Assert.Equal(linesBefore + 1, h.Log.Count("BLOCK_STATUS at the end of the export"));
        Assert.True(h.Log.Contains($"BLOCK_STATUS of 0 bytes at offset {Size}: EINVAL"), string.Join("\n", h.Log.Lines.Select(l => l.Text)));
        // A zero-length query inside the export is answered (one extent), not an error.
        Assert.Equal(0u, (await c.RoundTripAsync(CmdBlockStatus, 0, 0)).Error);
        Assert.Equal(errorsBefore + 1, h.Server.Counters.Errors);
    }

    [Fact]
    public async Task Client_supplied_names_reach_the_log_with_control_characters_escaped_and_cut_to_256_characters()
    {
        await using var h = await NbdHarness.StartAsync();
        // A forged log line (no colon, so it is also a metadata query without a namespace), a terminal escape, a Unicode
        // line separator, and 1000 more characters.
        string forged = "x\rfake\r\n12.00.00.000 info nbd[6] connection #1 closed\u001b[2J\u2028end" + new string('A', 1000);

        // Refused with a reply (GO), a metadata query with no namespace, and EXPORT_NAME, which ends the handshake.
        await using (var c = await h.ConnectAsync())
        {
            await c.ReadGreetingAsync();
            await c.SendClientFlagsAsync(ClientFixedNewstyle | ClientNoZeroes);
            await c.SendOptionAsync(OptGo, RawNbdClient.InfoData(forged));
            Assert.Equal(RepErrUnknown, (await c.ReadOptionReplyAsync()).Type);
            await c.SendOptionAsync(OptStructuredReply, []);
            Assert.Equal(RepAck, (await c.ReadOptionReplyAsync()).Type);
            await c.SendOptionAsync(OptListMetaContext, RawNbdClient.MetaData("origin", forged));
            Assert.Equal(RepErrInvalid, (await c.ReadOptionReplyAsync()).Type);
            await c.SendOptionAsync(OptExportName, Encoding.UTF8.GetBytes(forged));
            Assert.True(await c.ServerClosesAsync());
        }
        await NbdHarness.EventuallyAsync(() => h.Log.Count("closed: handshake failed") == 1, "the connection's close line");

        var lines = h.Log.Lines.Select(l => l.Text).Where(t => t.Contains("fake", StringComparison.Ordinal)).ToList();
        Assert.True(lines.Count >= 4, string.Join("\n", lines)); // GO refused, query refused, handshake failed, closed
        foreach (var line in lines)
        {
            Assert.DoesNotContain(line, ch => char.IsControl(ch) || ch is '\u2028' or '\u2029');
            Assert.Contains("x\\rfake\\r\\n12.00.00.000", line);
            Assert.Contains("\\x1b[2J\\u{2028}end", line);
            Assert.Contains($"...[cut: {forged.Length} characters]", line);
            Assert.DoesNotContain(new string('A', 300), line);
            Assert.True(line.Length < 1000, $"a line of {line.Length} characters");
        }
    }

    [Fact]
    public async Task A_connection_logs_its_first_ten_errors_then_counts_the_rest_and_sums_them_up_when_it_closes()
    {
        const int Bad = 2000;
        await using var h = await NbdHarness.StartAsync();
        long errorsBefore = h.Server.Counters.Errors;
        await using (var c = await h.OpenAsync())
        {
            // Unaligned READs (EINVAL each), pipelined 200 at a time, every reply read.
            for (int batch = 0; batch < Bad / 200; batch++)
            {
                for (int i = 0; i < 200; i++) await c.SendRequestAsync(CmdRead, 1, 512);
                for (int i = 0; i < 200; i++) Assert.Equal(EINVAL, (await c.ReadReplyAsync().WaitAsync(RawNbdClient.Watchdog)).Error);
            }
            Assert.Equal(errorsBefore + Bad, h.Server.Counters.Errors); // every one counted
            await c.DisconnectAsync();
        }
        await NbdHarness.EventuallyAsync(() => h.Log.Contains("closed: client disconnected"), "the close line");

        Assert.Equal(10, h.Log.Count("READ of 512 bytes at offset 1: EINVAL"));
        Assert.Equal(1, h.Log.Count("10 errors logged; further errors of this connection are counted but not logged"));
        Assert.Equal(1, h.Log.Count($"{Bad - 10} more errors were not logged ({Bad} in all)"));
        Assert.True(h.Log.Lines.Count < 30, $"{h.Log.Lines.Count} log lines for one connection's {Bad} bad requests");

        // The limit is per connection: another one's errors are logged again.
        await using (var c = await h.OpenAsync())
            Assert.Equal(EINVAL, (await c.RoundTripAsync(CmdRead, 1, 512)).Error);
        Assert.Equal(11, h.Log.Count("READ of 512 bytes at offset 1: EINVAL"));
    }

    [Fact]
    public async Task Unsupported_options_repeated_in_a_handshake_log_ten_lines_then_are_counted()
    {
        const int Options = 200;
        await using var h = await NbdHarness.StartAsync();
        await using (var c = await h.ConnectAsync())
        {
            await c.ReadGreetingAsync();
            await c.SendClientFlagsAsync(ClientFixedNewstyle | ClientNoZeroes);
            for (int i = 0; i < Options; i++)
            {
                await c.SendOptionAsync(0x7f00, []);
                Assert.Equal(RepErrUnsup, (await c.ReadOptionReplyAsync()).Type);
            }
            await c.SendOptionAsync(OptAbort, []);
        }
        await NbdHarness.EventuallyAsync(() => h.Log.Contains("more errors were not logged"), "the connection's summary line");
        Assert.Equal(10, h.Log.Count("not supported"));
        Assert.True(h.Log.Contains($"{Options - 10} more errors were not logged ({Options} in all)"), string.Join("\n", h.Log.Lines.Select(l => l.Text)));
    }
}
