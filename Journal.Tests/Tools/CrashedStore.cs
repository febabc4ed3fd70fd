using Journal.Format;
using Journal.Recovery;
using Journal.Storage;
using Journal.Testing;
using Journal.Tests.Recovery;
using Snapshot;
using static Journal.Tests.Snapshot.SnapTestUtil;

namespace Journal.Tests.Tools;

/// <summary>
/// Store folders on disk as an unclean stop leaves them, for the tool tests: a store is built through the library,
/// its files are copied while it is open (every write kept, the log not clean), then it is closed.
/// </summary>
internal static class CrashedStore
{
    /// <summary>Origin size: 256 chunks of 4 KiB.</summary>
    public const int OriginSectors = 8 * 256;

    /// <summary>What the stores built here hold.</summary>
    public sealed record Contents(byte[] Origin, byte[] SnapshotS);

    /// <summary>
    /// Builds a crashed store in <paramref name="folder"/>: the origin written, snapshot <c>s</c> taken, chunks 0..29
    /// rewritten (copies into <c>s</c>), everything written home, snapshot <c>t</c> taken, chunks 20..39 rewritten,
    /// <c>t</c> deleted (so the log holds segments of <c>s</c> not yet home and segments of a deleted snapshot).
    /// <paramref name="clean"/> closes it instead (a clean log).
    /// </summary>
    public static async Task<Contents> CreateAsync(string folder, bool clean = false)
    {
        string live = folder + ".live";
        var store = await SnapshotStore.CreateAsync(live, new StoreOptions { OriginSectors = OriginSectors, LogBlocks = 2048, WriteThrough = true });
        var origin = Pattern(0, OriginSectors, 1);
        await store.Origin.WriteAsync(0, origin);
        var s = origin.ToArray();
        await store.CreateSnapshotAsync("s");
        for (int c = 0; c < 30; c++) await Write(store, origin, c, 2);
        await store.Journal!.WriteBackAsync();   // store.sb lists s; its first segments are home
        await store.CreateSnapshotAsync("t");
        for (int c = 20; c < 40; c++) await Write(store, origin, c, 3);
        await store.DeleteSnapshotAsync("t");
        if (clean)
        {
            await store.CloseAsync();
            CopyFolder(live, folder);
        }
        else
        {
            CopyFolder(live, folder);
            await store.CloseAsync();
        }
        Directory.Delete(live, recursive: true);
        return new Contents(origin, s);
    }

    private static async Task Write(SnapshotStore store, byte[] origin, int chunk, int version)
    {
        var data = Pattern(chunk * 8L, 8, version);
        await store.Origin.WriteAsync(chunk * 8L, data);
        data.CopyTo(origin, chunk * 8 * 512);
    }

    /// <summary>Copies every file but <c>store.lock</c>.</summary>
    public static void CopyFolder(string from, string to)
    {
        Directory.CreateDirectory(to);
        foreach (var f in Directory.EnumerateFiles(from))
            if (Path.GetFileName(f) != "store.lock") File.Copy(f, Path.Combine(to, Path.GetFileName(f)), overwrite: true);
    }

    /// <summary>Every file but <c>store.lock</c>, by name.</summary>
    public static Dictionary<string, byte[]> Files(string folder) => Directory.EnumerateFiles(folder)
        .Where(f => Path.GetFileName(f) != "store.lock").ToDictionary(f => Path.GetFileName(f), File.ReadAllBytes);

    /// <summary>Asserts that <paramref name="after"/> holds the same files as <paramref name="before"/>, byte for byte.</summary>
    public static void AssertSameFiles(Dictionary<string, byte[]> before, Dictionary<string, byte[]> after)
    {
        Assert.Equal(before.Keys.Order(), after.Keys.Order());
        foreach (var (name, bytes) in before) Assert.True(bytes.AsSpan().SequenceEqual(after[name]), $"{name} changed");
    }

    /// <summary>The checkpoints of the log file <paramref name="log"/>.</summary>
    public static IReadOnlyList<Checkpoint> Checkpoints(string log)
    {
        var bytes = File.ReadAllBytes(log);
        return JournalRecovery.Scan(new LogRegion(MemoryBlockDevice.FromImage(bytes, log), 0, (uint)(bytes.Length / 512))).Checkpoints;
    }

    /// <summary>
    /// Rewrites byte <paramref name="offset"/> of checkpoint <paramref name="c"/> (its regions laid end to end) of the
    /// log file <paramref name="log"/> with <paramref name="change"/> applied, and seals the record with a correct CRC.
    /// The checkpoint must lie in the record of its start op.
    /// </summary>
    public static void Forge(string log, Checkpoint c, int offset, Func<byte, byte> change)
    {
        var bytes = File.ReadAllBytes(log);
        LogForge.PatchRecord(bytes, 0, (uint)(bytes.Length / 512), c.StartLsn, payload =>
        {
            int off = offset;
            foreach (var (at, len) in LogForge.OpData(payload, c.TransactionId))
            {
                if (off < len) { payload[at + off] = change(payload[at + off]); return; }
                off -= len;
            }
            throw new InvalidOperationException($"offset {offset} is beyond checkpoint {c.Sequence}'s first record");
        });
        File.WriteAllBytes(log, bytes);
    }

    /// <summary>Bytes of checkpoint <paramref name="c"/>'s regions laid end to end (the offsets <see cref="Forge"/> takes).</summary>
    public static int Length(Checkpoint c) => (int)c.PayloadBytes;
}
