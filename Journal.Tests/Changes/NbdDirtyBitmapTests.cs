using Journal.Testing;
using System.Text;
using Journal.Tests.Nbd;
using Snapshot.Changes;
using static Snapshot.Nbd.NbdProtocol;

namespace Journal.Tests.Changes;

/// <summary>
/// <c>qemu:dirty-bitmap:&lt;snapshot&gt;</c> from a raw socket: which exports list which bitmaps, the error reply for a
/// bitmap of a snapshot that exists but is not older than the export, BLOCK_STATUS answers that agree extent for extent
/// with the store's map (paged over many replies, REQ_ONE, an offset inside a chunk), and an error — never "clean" — once
/// the snapshot is gone.
/// </summary>
[System.Runtime.Versioning.UnsupportedOSPlatform("windows")]
public sealed class NbdDirtyBitmapTests
{
    private static string ContextName(OptionReply r) => Encoding.UTF8.GetString(r.Data, 4, r.Data.Length - 4);

    private static async Task<List<string>> ListAsync(RawNbdClient c, string export, params string[] queries)
    {
        await c.SendOptionAsync(OptListMetaContext, RawNbdClient.MetaData(export, queries));
        var replies = await c.ReadOptionRepliesAsync();
        Assert.Equal(RepAck, replies[^1].Type);
        return replies.Where(r => r.Type == RepMetaContext).Select(ContextName).ToList();
    }

    /// <summary>Walks the whole export with BLOCK_STATUS requests of <paramref name="step"/> bytes; returns the dirty extents, merged, and the replies it took.</summary>
    private static async Task<(List<(long Offset, long Length)> Dirty, int Replies, int MaxExtents)> WalkAsync(RawNbdClient c, uint context, long size, uint step)
    {
        var dirty = new List<(long, long)>();
        long pos = 0;
        int replies = 0, maxExtents = 0;
        while (pos < size)
        {
            uint len = (uint)Math.Min(step, size - pos);
            var r = await c.RoundTripAsync(CmdBlockStatus, (ulong)pos, len);
            Assert.True(r.Error == 0, $"BLOCK_STATUS at {pos}: error {r.Error}: {r.Message}");
            var mine = r.Extents.Where(e => e.Context == context).ToList();
            Assert.NotEmpty(mine);
            replies++;
            maxExtents = Math.Max(maxExtents, mine.Count);
            long sum = 0;
            foreach (var (_, length, flags) in mine)
            {
                Assert.True(length > 0 && length % 512 == 0, $"extent of {length} bytes");
                Assert.True(flags is 0 or 1, $"flags {flags}");
                if (flags == 1)
                {
                    if (dirty.Count > 0 && dirty[^1].Item1 + dirty[^1].Item2 == pos + sum) dirty[^1] = (dirty[^1].Item1, dirty[^1].Item2 + length);
                    else dirty.Add((pos + sum, length));
                }
                sum += length;
            }
            Assert.True(sum <= len, $"extents add up to {sum}, more than the {len} asked");
            pos += sum;
        }
        return (dirty, replies, maxExtents);
    }

    private static List<(long, long)> Expected(ChangedExtents map) => map.Extents.Select(e => (e.Offset, e.Length)).ToList();

    [Fact]
    public async Task Bitmaps_are_listed_per_export_and_block_status_agrees_with_the_map()
    {
        await using var h = await NbdHarness.StartAsync(originBytes: 64 << 20);
        var store = h.Store;
        var r = new Random(3);
        var data = new byte[4096];
        async Task Write(global::Snapshot.StoreVolume v, long chunk)
        {
            r.NextBytes(data);
            await v.WriteAsync(chunk * 8, data).AsTask().WaitAsync(RawNbdClient.Watchdog);
        }
        await store.CreateSnapshotAsync("a").AsTask().WaitAsync(RawNbdClient.Watchdog);
        // Every other chunk of the first 5000: 5000 dirty extents, more than one reply holds.
        for (long c = 0; c < 10_000; c += 2) await Write(store.Origin, c);
        await store.CreateSnapshotAsync("b").AsTask().WaitAsync(RawNbdClient.Watchdog);
        for (long c = 12_000; c < 12_100; c++) await Write(store.Origin, c);
        await Write(store.GetSnapshot("b"), 15_000);

        await using (var c = await h.ConnectAsync())
        {
            await c.ReadGreetingAsync();
            await c.SendClientFlagsAsync(ClientFixedNewstyle | ClientNoZeroes);
            await c.SendOptionAsync(OptStructuredReply, []);
            Assert.Equal(RepAck, (await c.ReadOptionReplyAsync()).Type);
            Assert.Equal([BaseAllocation, "qemu:dirty-bitmap:a", "qemu:dirty-bitmap:b"], await ListAsync(c, "origin"));
            Assert.Equal(["qemu:dirty-bitmap:a", "qemu:dirty-bitmap:b"], await ListAsync(c, "origin", "qemu:"));
            Assert.Equal(["qemu:dirty-bitmap:a", "qemu:dirty-bitmap:b"], await ListAsync(c, "origin", "qemu:dirty-bitmap:"));
            Assert.Equal([BaseAllocation, "qemu:dirty-bitmap:a"], await ListAsync(c, "b"));
            Assert.Equal([BaseAllocation], await ListAsync(c, "a"));
            Assert.Empty(await ListAsync(c, "b", "qemu:dirty-bitmap:nosuch")); // unknown bitmaps are ignored, as qemu does
            // A bitmap of a snapshot that is not older than the export: an error reply with the reason.
            await c.SendOptionAsync(OptSetMetaContext, RawNbdClient.MetaData("a", "qemu:dirty-bitmap:b"));
            var refused = await c.ReadOptionReplyAsync();
            Assert.Equal(RepErrInvalid, refused.Type);
            Assert.Contains("not older than export 'a'", Encoding.UTF8.GetString(refused.Data));
            await c.SendOptionAsync(OptSetMetaContext, RawNbdClient.MetaData("b", "qemu:dirty-bitmap:b"));
            Assert.Equal(RepErrInvalid, (await c.ReadOptionReplyAsync()).Type);
        }

        long size = 64 << 20;
        await using (var c = await h.OpenAsync("origin", structured: true, BaseAllocation, "qemu:dirty-bitmap:a"))
        {
            uint id = c.Contexts["qemu:dirty-bitmap:a"];
            var (dirty, replies, maxExtents) = await WalkAsync(c, id, size, uint.MaxValue - 511);
            Assert.Equal(Expected(await store.GetChangedExtentsAsync("a")), dirty);
            Assert.True(replies > 1, "5000 dirty extents fit in one reply: the paging was not exercised");
            Assert.True(maxExtents <= 2048, $"{maxExtents} extents in one reply");
            // An offset inside a dirty chunk: the first extent runs from there to the end of the chunk; REQ_ONE gives one.
            var one = await c.RoundTripAsync(CmdBlockStatus, 4096 * 2 + 512, 1 << 20, flags: CmdFlagReqOne);
            Assert.Equal((id, 3584u, 1u), one.Extents.Single(e => e.Context == id));
        }
        await using (var c = await h.OpenAsync("b", structured: true, "qemu:dirty-bitmap:a"))
        {
            uint id = c.Contexts["qemu:dirty-bitmap:a"];
            var (dirty, _, _) = await WalkAsync(c, id, size, 8 << 20);
            Assert.Equal(Expected(await store.GetChangedExtentsAsync("a", "b")), dirty);
            Assert.Contains((15_000L * 4096, 4096L), dirty); // b's own write
            Assert.DoesNotContain(dirty, e => e.Offset == 12_000L * 4096); // origin writes after b are not changes from a to b

            // Once 'a' is gone, its bitmap answers an error, never "clean".
            await h.Server.DeleteSnapshotAsync("a", force: false).WaitAsync(RawNbdClient.Watchdog);
            var gone = await c.RoundTripAsync(CmdBlockStatus, 0, 1 << 20);
            Assert.Equal(EINVAL, gone.Error);
            Assert.Contains("no snapshot named 'a'", gone.Message);
            Assert.Empty(gone.Extents);
        }
        Assert.True(h.Log.Contains("qemu:dirty-bitmap:a: "), "the failed BLOCK_STATUS was not logged");
    }
}
