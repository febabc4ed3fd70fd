using System.Buffers.Binary;
using System.Net.Sockets;
using System.Text;
using Snapshot.Nbd;
using static Snapshot.Nbd.NbdProtocol;

namespace Journal.Tests.Nbd;

/// <summary>
/// The protocol as the server speaks it, from a raw socket client: negotiation, every command, the reply forms, and
/// every kind of bad input, each answered as the protocol prescribes (an error reply, or that one connection closed),
/// logged in one line without a stack trace, while the server and other clients carry on.
/// </summary>
public sealed class NbdProtocolTests
{
    private static byte[] Fill(int n, byte v)
    {
        var b = new byte[n];
        b.AsSpan().Fill(v);
        return b;
    }

    private static byte[] Random(int n, int seed)
    {
        var b = new byte[n];
        new Random(seed).NextBytes(b);
        return b;
    }

    /// <summary>A second client still negotiates, writes and reads back: the server carried on.</summary>
    private static async Task AssertServerWorksAsync(NbdHarness h)
    {
        await using var c = await h.OpenAsync();
        var data = Random(4096, 77);
        await c.WriteAsync(8192, data);
        Assert.Equal(data, await c.ReadAsync(8192, 4096));
        await c.DisconnectAsync();
    }

    private static void AssertNoStackTraces(NbdHarness h)
    {
        foreach (var (_, text) in h.Log.Lines)
        {
            Assert.DoesNotContain("\n", text);
            Assert.DoesNotContain("   at ", text);
        }
    }

    [Fact]
    public async Task Handshake_is_fixed_newstyle_with_no_zeroes_and_GO_describes_the_export()
    {
        await using var h = await NbdHarness.StartAsync(originBytes: 8 << 20, chunkBytes: 16384);
        await using var c = await h.ConnectAsync();
        ushort flags = await c.ReadGreetingAsync();
        Assert.Equal(FlagFixedNewstyle | FlagNoZeroes, flags);
        await c.SendClientFlagsAsync(ClientFixedNewstyle | ClientNoZeroes);
        await c.SendOptionAsync(OptStructuredReply, []);
        Assert.Equal(RepAck, (await c.ReadOptionReplyAsync()).Type);
        await c.SendOptionAsync(OptInfo, RawNbdClient.InfoData("", InfoBlockSize, InfoName, InfoDescription));
        var infos = await c.ReadOptionRepliesAsync();
        Assert.Equal(RepAck, infos[^1].Type);
        var byType = infos.Where(r => r.Type == RepInfo).ToDictionary(r => BinaryPrimitives.ReadUInt16BigEndian(r.Data), r => r.Data);
        Assert.Equal((ulong)(8 << 20), BinaryPrimitives.ReadUInt64BigEndian(byType[InfoExport].AsSpan(2)));
        ushort tx = BinaryPrimitives.ReadUInt16BigEndian(byType[InfoExport].AsSpan(10));
        foreach (ushort f in new[] { TxHasFlags, TxSendFlush, TxSendFua, TxSendTrim, TxSendWriteZeroes, TxCanMultiConn, TxSendDf })
            Assert.True((tx & f) != 0, $"flag 0x{f:x} missing from 0x{tx:x}");
        Assert.Equal(0, tx & TxReadOnly);
        Assert.Equal("origin", Encoding.UTF8.GetString(byType[InfoName], 2, byType[InfoName].Length - 2));
        Assert.Contains("origin of store", Encoding.UTF8.GetString(byType[InfoDescription], 2, byType[InfoDescription].Length - 2));
        var bs = byType[InfoBlockSize];
        Assert.Equal(512u, BinaryPrimitives.ReadUInt32BigEndian(bs.AsSpan(2)));
        Assert.Equal(16384u, BinaryPrimitives.ReadUInt32BigEndian(bs.AsSpan(6)));
        Assert.Equal(32u << 20, BinaryPrimitives.ReadUInt32BigEndian(bs.AsSpan(10)));
        // GO after INFO on the same connection enters transmission.
        await c.SendOptionAsync(OptGo, RawNbdClient.InfoData("origin"));
        Assert.Equal(RepAck, (await c.ReadOptionRepliesAsync())[^1].Type);
        var r = await c.RoundTripAsync(CmdRead, 0, 4096);
        Assert.Equal(0u, r.Error);
        Assert.False(r.Simple);
        Assert.Equal(new byte[4096], r.Data);
    }

    [Fact]
    public async Task EXPORT_NAME_enters_transmission_with_and_without_zeroes()
    {
        await using var h = await NbdHarness.StartAsync();
        foreach (bool noZeroes in new[] { true, false })
        {
            await using var c = await h.ConnectAsync();
            await c.ReadGreetingAsync();
            await c.SendClientFlagsAsync(ClientFixedNewstyle | (noZeroes ? ClientNoZeroes : 0));
            await c.SendOptionAsync(OptExportName, Encoding.UTF8.GetBytes("origin"));
            var reply = await c.ReceiveExactAsync(noZeroes ? 10 : 134);
            Assert.Equal((ulong)(16 << 20), BinaryPrimitives.ReadUInt64BigEndian(reply));
            if (!noZeroes) Assert.All(reply[10..], b => Assert.Equal(0, b));
            // Simple replies: a READ's data follows its header.
            await c.WriteAsync(0, Fill(512, 0x5a));
            var r = await c.RoundTripAsync(CmdRead, 0, 512);
            Assert.True(r.Simple);
            Assert.Equal(Fill(512, 0x5a), r.Data);
            await c.DisconnectAsync();
        }
    }

    [Fact]
    public async Task LIST_names_every_export_and_a_new_snapshot_at_once()
    {
        await using var h = await NbdHarness.StartAsync();
        await h.Server.CreateSnapshotAsync("monday");
        await using var c = await h.ConnectAsync();
        await c.ReadGreetingAsync();
        await c.SendClientFlagsAsync(ClientFixedNewstyle | ClientNoZeroes);
        async Task<List<string>> ListAsync()
        {
            await c.SendOptionAsync(OptList, []);
            var replies = await c.ReadOptionRepliesAsync();
            Assert.Equal(RepAck, replies[^1].Type);
            return replies.Where(r => r.Type == RepServer)
                .Select(r => Encoding.UTF8.GetString(r.Data, 4, (int)BinaryPrimitives.ReadUInt32BigEndian(r.Data))).ToList();
        }
        Assert.Equal(["origin", "monday"], await ListAsync());
        await h.Server.CreateSnapshotAsync("tuesday");
        Assert.Equal(["origin", "monday", "tuesday"], await ListAsync());
        await h.Server.DeleteSnapshotAsync("monday", force: false);
        Assert.Equal(["origin", "tuesday"], await ListAsync());
        // LIST with data is invalid; the negotiation goes on.
        await c.SendOptionAsync(OptList, [1, 2, 3]);
        Assert.Equal(RepErrInvalid, (await c.ReadOptionReplyAsync()).Type);
        await c.SendOptionAsync(OptGo, RawNbdClient.InfoData("tuesday"));
        Assert.Equal(RepAck, (await c.ReadOptionRepliesAsync())[^1].Type);
    }

    [Fact]
    public async Task Unknown_options_get_ERR_UNSUP_and_the_negotiation_goes_on()
    {
        await using var h = await NbdHarness.StartAsync();
        await using var c = await h.ConnectAsync();
        await c.ReadGreetingAsync();
        await c.SendClientFlagsAsync(ClientFixedNewstyle | ClientNoZeroes);
        foreach (uint option in new uint[] { OptStartTls, 11 /* EXTENDED_HEADERS */, 4 /* PEEK_EXPORT */, 12345 })
        {
            await c.SendOptionAsync(option, option == 12345 ? Fill(100, 7) : []);
            var r = await c.ReadOptionReplyAsync();
            Assert.Equal(option, r.Option);
            Assert.Equal(RepErrUnsup, r.Type);
        }
        await c.SendOptionAsync(OptGo, RawNbdClient.InfoData(""));
        Assert.Equal(RepAck, (await c.ReadOptionRepliesAsync())[^1].Type);
        Assert.Equal(new byte[512], await c.ReadAsync(0, 512));
    }

    [Fact]
    public async Task An_unknown_export_gets_ERR_UNKNOWN_from_GO_and_INFO_and_a_closed_connection_from_EXPORT_NAME()
    {
        await using var h = await NbdHarness.StartAsync();
        await using (var c = await h.ConnectAsync())
        {
            await c.ReadGreetingAsync();
            await c.SendClientFlagsAsync(ClientFixedNewstyle | ClientNoZeroes);
            foreach (uint option in new[] { OptInfo, OptGo })
            {
                await c.SendOptionAsync(option, RawNbdClient.InfoData("no-such-snapshot"));
                var r = await c.ReadOptionReplyAsync();
                Assert.Equal(RepErrUnknown, r.Type);
                Assert.Contains("no-such-snapshot", r.Text);
            }
            await c.SendOptionAsync(OptGo, RawNbdClient.InfoData("origin"));
            Assert.Equal(RepAck, (await c.ReadOptionRepliesAsync())[^1].Type);
        }
        await using (var c = await h.ConnectAsync())
        {
            await c.ReadGreetingAsync();
            await c.SendClientFlagsAsync(ClientFixedNewstyle | ClientNoZeroes);
            await c.SendOptionAsync(OptExportName, Encoding.UTF8.GetBytes("nope"));
            Assert.True(await c.ServerClosesAsync());
        }
        Assert.True(h.Log.Contains("no export named 'nope'"));
        await AssertServerWorksAsync(h);
        AssertNoStackTraces(h);
    }

    [Fact]
    public async Task Bad_handshakes_close_only_that_connection()
    {
        await using var h = await NbdHarness.StartAsync();
        // Garbage instead of client flags: unknown flag bits.
        await using (var c = await h.ConnectAsync())
        {
            await c.ReadGreetingAsync();
            await c.SendAsync(Encoding.ASCII.GetBytes("GET / HTTP/1.1\r\n\r\n"));
            Assert.True(await c.ServerClosesAsync());
        }
        // A wrong option magic.
        await using (var c = await h.ConnectAsync())
        {
            await c.ReadGreetingAsync();
            await c.SendClientFlagsAsync(ClientFixedNewstyle);
            await c.SendOptionAsync(OptGo, RawNbdClient.InfoData(""), magic: 0x1122334455667788);
            Assert.True(await c.ServerClosesAsync());
        }
        // A short handshake: half an option header, then the client goes away.
        await using (var c = await h.ConnectAsync())
        {
            await c.ReadGreetingAsync();
            await c.SendClientFlagsAsync(ClientFixedNewstyle);
            await c.SendAsync(new byte[7]);
            c.Socket.Shutdown(SocketShutdown.Send);
            Assert.True(await c.ServerClosesAsync());
        }
        // Option data too large to be honest.
        await using (var c = await h.ConnectAsync())
        {
            await c.ReadGreetingAsync();
            await c.SendClientFlagsAsync(ClientFixedNewstyle);
            var header = new byte[16];
            BinaryPrimitives.WriteUInt64BigEndian(header, OptionMagic);
            BinaryPrimitives.WriteUInt32BigEndian(header.AsSpan(8), OptGo);
            BinaryPrimitives.WriteUInt32BigEndian(header.AsSpan(12), 0x7fffffff);
            await c.SendAsync(header);
            Assert.True(await c.ServerClosesAsync());
        }
        // A client that connects and closes at once.
        for (int i = 0; i < 5; i++) (await h.ConnectAsync()).Socket.Dispose();
        await AssertServerWorksAsync(h);
        Assert.True(h.Log.Contains("unknown client flags"));
        Assert.True(h.Log.Contains("bad option magic 0x1122334455667788"));
        Assert.True(h.Log.Contains("short option header"));
        Assert.True(h.Log.Contains("more than 65536"));
        AssertNoStackTraces(h);
        await NbdHarness.EventuallyAsync(() => h.Server.ConnectionCount == 0, "every connection closed");
    }

    [Fact]
    public async Task Meta_contexts_need_structured_replies_and_base_allocation_answers_block_status()
    {
        await using var h = await NbdHarness.StartAsync();
        await using (var c = await h.ConnectAsync())
        {
            await c.ReadGreetingAsync();
            await c.SendClientFlagsAsync(ClientFixedNewstyle | ClientNoZeroes);
            await c.SendOptionAsync(OptSetMetaContext, RawNbdClient.MetaData("", BaseAllocation));
            Assert.Equal(RepErrInvalid, (await c.ReadOptionReplyAsync()).Type);
            await c.SendOptionAsync(OptStructuredReply, []);
            Assert.Equal(RepAck, (await c.ReadOptionReplyAsync()).Type);
            // LIST with no query lists everything; "base:" lists the base namespace; unknown namespaces are ignored.
            foreach (var queries in new[] { Array.Empty<string>(), ["base:"], ["qemu:dirty-bitmap:x", BaseAllocation] })
            {
                await c.SendOptionAsync(OptListMetaContext, RawNbdClient.MetaData("origin", queries));
                var replies = await c.ReadOptionRepliesAsync();
                Assert.Equal(RepAck, replies[^1].Type);
                Assert.Equal([BaseAllocation], replies.Where(r => r.Type == RepMetaContext).Select(r => Encoding.UTF8.GetString(r.Data, 4, r.Data.Length - 4)));
            }
            await c.SendOptionAsync(OptListMetaContext, RawNbdClient.MetaData("origin", "nocolon"));
            Assert.Equal(RepErrInvalid, (await c.ReadOptionReplyAsync()).Type);
            await c.SendOptionAsync(OptListMetaContext, [0, 0, 0, 9]);
            Assert.Equal(RepErrInvalid, (await c.ReadOptionReplyAsync()).Type);
            await c.SendOptionAsync(OptSetMetaContext, RawNbdClient.MetaData("nope", BaseAllocation));
            Assert.Equal(RepErrUnknown, (await c.ReadOptionReplyAsync()).Type);
        }
        await using (var c = await h.OpenAsync("", structured: true, BaseAllocation, "x-unknown:thing"))
        {
            uint id = Assert.Single(c.Contexts).Value;
            Assert.NotEqual(0u, id);
            var r = await c.RoundTripAsync(CmdBlockStatus, 4096, 1 << 20);
            Assert.Equal(0u, r.Error);
            var e = Assert.Single(r.Extents);
            Assert.Equal((id, 1u << 20, 0u), e);
            r = await c.RoundTripAsync(CmdBlockStatus, 0, 16 << 20, flags: CmdFlagReqOne);
            Assert.Single(r.Extents);
            r = await c.RoundTripAsync(CmdBlockStatus, 16 << 20, 512);
            Assert.Equal(EINVAL, r.Error);
        }
        // BLOCK_STATUS without a selected context is EINVAL.
        await using (var c = await h.OpenAsync())
        {
            var r = await c.RoundTripAsync(CmdBlockStatus, 0, 4096);
            Assert.Equal(EINVAL, r.Error);
            Assert.Contains("metadata context", r.Message);
        }
    }

    [Fact]
    public async Task Bad_requests_get_the_prescribed_error_and_the_connection_goes_on()
    {
        await using var h = await NbdHarness.StartAsync(originBytes: 1 << 20);
        foreach (bool structured in new[] { true, false })
        {
            await using var c = await h.OpenAsync("", structured);
            async Task Expect(uint error, ushort type, ulong offset, uint length, byte[]? payload = null, ushort flags = 0)
            {
                var r = await c.RoundTripAsync(type, offset, length, payload ?? default(ReadOnlyMemory<byte>), flags);
                Assert.True(error == r.Error, $"{CommandName(type)} {length} at {offset} flags {flags}: expected error {error}, got {r.Error} ({r.Message})");
                if (structured) Assert.False(string.IsNullOrEmpty(r.Message));
            }
            await Expect(EINVAL, CmdRead, 0, (32u << 20) + 512);                 // oversized read
            await Expect(EINVAL, CmdWrite, 0, (32u << 20) + 512, new byte[(32 << 20) + 512]); // oversized write: payload drained
            await Expect(EINVAL, CmdRead, 1 << 20, 512);                           // read past the end
            await Expect(ENOSPC, CmdWrite, (1 << 20) - 512, 1024, new byte[1024]); // write past the end
            await Expect(ENOSPC, CmdWriteZeroes, 1 << 20, 512);                    // zeroes past the end
            await Expect(EINVAL, CmdTrim, ulong.MaxValue - 511, 512);              // trim past the end (offset overflow)
            await Expect(EINVAL, CmdRead, 100, 512);                               // unaligned offset
            await Expect(EINVAL, CmdWrite, 0, 100, new byte[100]);                 // unaligned length
            await Expect(EINVAL, 99, 0, 0);                                        // unknown command
            await Expect(EINVAL, CmdCache, 0, 512);                                // not advertised
            await Expect(EINVAL, CmdWrite, 0, 512, new byte[512], flags: CmdFlagNoHole); // flag not valid for WRITE
            await Expect(EINVAL, CmdWriteZeroes, 0, 512, flags: CmdFlagFastZero);  // not advertised
            await Expect(EINVAL, CmdRead, 0, 512, flags: 0x100);                   // unknown flag
            if (!structured) await Expect(EINVAL, CmdRead, 0, 512, flags: CmdFlagDf); // DF needs structured replies
            // The connection still works.
            var data = Random(4096, 3);
            await c.WriteAsync(0, data);
            Assert.Equal(data, await c.ReadAsync(0, 4096));
            await c.DisconnectAsync();
        }
        Assert.True(h.Log.Count("EINVAL") >= 10);
        Assert.True(h.Log.Contains("ENOSPC"));
        AssertNoStackTraces(h);
    }

    [Fact]
    public async Task A_read_only_server_refuses_writes_with_EPERM()
    {
        await using var h = await NbdHarness.StartAsync(readOnly: true);
        await using var c = await h.OpenAsync();
        Assert.NotEqual(0, c.TransmissionFlags & TxReadOnly);
        foreach (var (type, payload) in new (ushort, byte[]?)[] { (CmdWrite, new byte[4096]), (CmdTrim, null), (CmdWriteZeroes, null) })
        {
            var r = await c.RoundTripAsync(type, 0, 4096, payload ?? default(ReadOnlyMemory<byte>));
            Assert.Equal(EPERM, r.Error);
        }
        Assert.Equal(new byte[4096], await c.ReadAsync(0, 4096));
        await c.FlushAsync();
    }

    [Fact]
    public async Task A_bad_request_magic_closes_that_connection_and_acknowledged_writes_stay()
    {
        await using var h = await NbdHarness.StartAsync();
        await using (var c = await h.OpenAsync())
        {
            await c.WriteAsync(0, Fill(4096, 0x42));
            await c.SendAsync(RawNbdClient.RequestHeader(CmdRead, 0, 99, 0, 512, magic: 0xdeadbeef));
            Assert.True(await c.ServerClosesAsync());
        }
        Assert.True(h.Log.Contains("bad request magic 0xdeadbeef"));
        await using (var c = await h.OpenAsync())
            Assert.Equal(Fill(4096, 0x42), await c.ReadAsync(0, 4096));
        AssertNoStackTraces(h);
    }

    [Fact]
    public async Task Commands_work_pipelined_with_replies_in_any_order()
    {
        await using var h = await NbdHarness.StartAsync(originBytes: 8 << 20);
        await using var c = await h.OpenAsync("", true, BaseAllocation);
        var expected = new Dictionary<ulong, int>();
        var handles = new List<ulong>();
        // 64 writes of distinct chunks in one go, without waiting for any reply.
        for (int i = 0; i < 64; i++)
            handles.Add(await c.SendRequestAsync(CmdWrite, (ulong)i * 65536, 65536, Random(65536, i), flags: (ushort)(i % 7 == 0 ? CmdFlagFua : 0)));
        handles.Add(await c.SendRequestAsync(CmdWriteZeroes, 64 * 65536, 65536, flags: CmdFlagNoHole | CmdFlagFua));
        handles.Add(await c.SendRequestAsync(CmdTrim, 65 * 65536, 65536));
        handles.Add(await c.SendRequestAsync(CmdBlockStatus, 0, 1 << 20));
        var seen = new HashSet<ulong>();
        for (int i = 0; i < handles.Count; i++)
        {
            var r = await c.ReadReplyAsync();
            Assert.Equal(0u, r.Error);
            Assert.True(seen.Add(r.Handle));
        }
        Assert.True(seen.SetEquals(handles));
        await c.FlushAsync();
        // 64 reads in one go, each checked.
        var reads = new Dictionary<ulong, int>();
        for (int i = 0; i < 64; i++) reads[await c.SendRequestAsync(CmdRead, (ulong)i * 65536, 65536)] = i;
        for (int i = 0; i < 64; i++)
        {
            var r = await c.ReadReplyAsync();
            Assert.Equal(0u, r.Error);
            Assert.Equal(Random(65536, reads[r.Handle]), r.Data);
        }
        Assert.Equal(new byte[65536], await c.ReadAsync(64 * 65536, 65536));
        // Zero-length requests are answered (no data) and harmless.
        Assert.Equal(0u, (await c.RoundTripAsync(CmdRead, 0, 0)).Error);
        Assert.Equal(0u, (await c.RoundTripAsync(CmdWrite, 0, 0)).Error);
        await c.DisconnectAsync();
    }

    [Fact]
    public async Task A_client_vanishing_mid_request_loses_only_that_request()
    {
        await using var h = await NbdHarness.StartAsync();
        await using (var c = await h.OpenAsync())
        {
            await c.WriteAsync(0, Fill(4096, 0x11));
            // A WRITE of 64 KiB of which only 1000 bytes arrive.
            await c.SendAsync(RawNbdClient.RequestHeader(CmdWrite, 0, 7, 0, 65536).Concat(Fill(1000, 0x99)).ToArray());
        }
        await using (var c = await h.OpenAsync())
        {
            // Half a request header.
            await c.SendAsync(RawNbdClient.RequestHeader(CmdRead, 0, 8, 0, 512)[..13]);
        }
        await NbdHarness.EventuallyAsync(() => h.Server.ConnectionCount == 0, "the vanished clients' connections closed");
        Assert.True(h.Log.Contains("in the middle of a WRITE payload"));
        Assert.True(h.Log.Contains("in the middle of a request header"));
        await using (var c = await h.OpenAsync())
            Assert.Equal(Fill(4096, 0x11), await c.ReadAsync(0, 4096)); // the partial write was not applied
        await AssertServerWorksAsync(h);
        AssertNoStackTraces(h);
    }

    [Fact]
    public async Task Thousands_of_connections_opened_and_dropped_leave_the_server_serving()
    {
        await using var h = await NbdHarness.StartAsync();
        int n = int.TryParse(Environment.GetEnvironmentVariable("JOURNAL_NBD_CONNECT_STORM"), out int k) ? k : 2000;
        await using var steady = await h.OpenAsync();
        var data = Random(4096, 9);
        await steady.WriteAsync(0, data);
        for (int batch = 0; batch < n; batch += 50)
        {
            await Task.WhenAll(Enumerable.Range(0, 50).Select(async i =>
            {
                var c = await h.ConnectAsync();
                switch (i % 3)
                {
                    case 0: break;                                              // drop at once
                    case 1: await c.ReadGreetingAsync(); break;                 // drop after the greeting
                    default:                                                    // drop in transmission
                        await c.NegotiateAsync();
                        await c.SendRequestAsync(CmdRead, 0, 4096);
                        break;
                }
                c.Socket.Dispose();
            }));
            Assert.Equal(data, await steady.ReadAsync(0, 4096));
        }
        await NbdHarness.EventuallyAsync(() => h.Server.ConnectionCount == 1, "every dropped connection closed");
        Assert.True(h.Server.ConnectionsAccepted >= n + 1);
        await AssertServerWorksAsync(h);
        AssertNoStackTraces(h);
    }

    [Fact]
    public async Task Past_max_connections_a_new_connection_is_closed_and_logged()
    {
        await using var h = await NbdHarness.StartAsync(maxConnections: 2);
        await using var a = await h.OpenAsync();
        await using var b = await h.OpenAsync();
        await using (var c = await h.ConnectAsync())
            Assert.True(await c.ServerClosesAsync());
        Assert.True(h.Log.Contains("already has 2 connections"));
        await a.DisconnectAsync();
        await NbdHarness.EventuallyAsync(() => h.Server.ConnectionCount == 1, "the first connection closed");
        await using var d = await h.OpenAsync();
        Assert.Equal(new byte[512], await d.ReadAsync(0, 512));
    }
}
