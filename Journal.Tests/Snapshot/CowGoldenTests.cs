using System.Text;
using Journal.Tests.Golden;
using Snapshot;
using static Journal.Tests.Snapshot.SnapTestUtil;

namespace Journal.Tests.Snapshot;

/// <summary>
/// A cleanly closed COW file is a valid dm-snapshot persistent COW device holding the expected exceptions: pinned byte
/// for byte (header, metadata area, terminator, the creation-marks chunk, data chunks) by a golden file. The home-LSN slots of chunk 0 (bytes
/// 128 onwards, which dm-snapshot never reads) are left out of the dump.
/// </summary>
public class CowGoldenTests
{
    private static byte[] ChunkText(string text)
    {
        var b = new byte[8 * 512];
        Encoding.ASCII.GetBytes(text).CopyTo(b, 0);
        return b;
    }

    [Fact]
    public async Task Cleanly_closed_cow_file_is_a_dm_snapshot_persistent_device()
    {
        var p = new TestDeviceProvider();
        var store = await CreateMemoryStoreAsync(p, 16 * 8);
        for (int c = 0; c < 16; c++) await WriteAsync(store.Origin, c * 8L, ChunkText($"origin chunk {c:D2} v1\n"));
        var snap = await store.CreateSnapshotAsync("golden", new SnapshotOptions { CowSectors = 12 * 8 });
        foreach (int c in new[] { 3, 4, 5, 9, 1 }) await WriteAsync(store.Origin, c * 8L, ChunkText($"origin chunk {c:D2} v2\n"));
        await WriteAsync(snap, 12 * 8, ChunkText("snapshot's own chunk 12\n"));   // full chunk: no copy
        await WriteAsync(snap, 3 * 8 + 1, ChunkText("snapshot write into chunk 03 at sector 1\n").AsSpan(0, 512).ToArray());
        string cow = store.CowPathOf("golden");
        await store.CloseAsync();

        var image = p.Backing(cow).ToArray();
        var dm = DmCow.Read(image);
        // Chunk 2 holds the creation marks (changed-block tracking): the data chunks start at 3.
        Assert.Equal([(3UL, 3UL), (4UL, 4UL), (5UL, 5UL), (9UL, 6UL), (1UL, 7UL), (12UL, 8UL)], dm.Exceptions);

        var sb = new StringBuilder();
        sb.Append($"COW file golden.cow: {image.Length / 512} sectors ({image.Length / 4096} chunks of 8 sectors)\n");
        sb.Append($"header: magic 0x{dm.Magic:x8}, valid {dm.Valid}, version {dm.Version}, chunk_size {dm.ChunkSectors}\n");
        sb.Append($"metadata areas read until the terminator: {dm.AreasRead}\n");
        foreach (var (o, n) in dm.Exceptions) sb.Append($"  exception old_chunk {o} -> new_chunk {n}\n");
        sb.Append("chunk 0, bytes 0..127 (dm-snapshot header, then the store's fields):\n");
        sb.Append(GoldenFile.HexDump(image.AsSpan(0, 128)));
        for (int c = 1; c <= 8; c++)
        {
            sb.Append($"chunk {c}{(c == 1 ? " (metadata area 0)" : c == 2 ? " (creation marks: no other snapshot existed)" : "")}:\n");
            sb.Append(GoldenFile.HexDump(image.AsSpan(c * 4096, 4096)));
        }
        sb.Append("chunks 9..11: zero: ").Append(!image.AsSpan(9 * 4096).ContainsAnyExcept((byte)0)).Append('\n');
        GoldenFile.Verify("snapshot-cow-persistent", sb.ToString());
    }
}
