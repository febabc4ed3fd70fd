using Journal.Testing;
using Snapshot;
using Snapshot.Changes;
using static Journal.Tests.Snapshot.SnapTestUtil;

namespace Journal.Tests.Changes;

/// <summary>
/// A workload's history, kept by the tests beside the store: when each snapshot was created (its creation started),
/// and every write (its start), so a test can say which chunks a map may report: those the workload wrote.
/// </summary>
internal sealed class WriteHistory(int chunkSectors)
{
    private readonly List<(int Step, string Volume, long Sector, int Sectors)> _writes = new();
    private readonly Dictionary<string, int> _created = new();
    private int _step;

    /// <summary>Records that snapshot <paramref name="name"/> is being created now.</summary>
    public void Created(string name) => _created[name] = ++_step;

    /// <summary>Records a write to <paramref name="volume"/> (<c>origin</c> or a snapshot) starting now.</summary>
    public void Wrote(string volume, long sector, int sectors) => _writes.Add((++_step, volume, sector, sectors));

    /// <summary>
    /// The chunks a map from <paramref name="from"/> to <paramref name="to"/> (null: the origin) may report: origin
    /// writes after <paramref name="from"/> was created (and, for a snapshot, before it was), and writes into either.
    /// </summary>
    public HashSet<long> Allowed(string from, string? to)
    {
        int a = _created[from];
        int b = to is null ? int.MaxValue : _created[to];
        var set = new HashSet<long>();
        foreach (var (step, volume, sector, sectors) in _writes)
        {
            bool counts = volume == "origin" ? step > a && step < b : volume == from || volume == to;
            if (!counts) continue;
            for (long c = sector / chunkSectors; c <= (sector + sectors - 1) / chunkSectors; c++) set.Add(c);
        }
        return set;
    }
}

/// <summary>
/// The checks every changed-block test applies to a store: for each valid snapshot against the origin and for every
/// pair of valid snapshots (older first), a full copy of the first volume with the reported extents copied over it
/// from the second gives the second byte for byte; no reported chunk is outside what the workload wrote; and, when
/// <c>exact</c>, the reported chunks are exactly the chunks whose contents differ (random data: no write of identical
/// data happens by chance).
/// </summary>
internal static class ChangeCheck
{
    public static async Task<int> CheckAllAsync(SnapshotStore store, WriteHistory? history, bool exact, string where)
    {
        var status = store.GetStatus().Snapshots;
        var valid = status.Where(s => s.IsValid && !s.Merging).Select(s => s.Name).ToList();
        foreach (var s in status.Where(s => !s.IsValid))
        {
            var e = await Assert.ThrowsAsync<SnapshotInvalidException>(() => store.GetChangedExtentsAsync(s.Name).AsTask().WaitAsync(Watchdog));
            Assert.Contains(s.Name, e.Message);
        }
        var images = new Dictionary<string, byte[]> { ["origin"] = await ReadAsync(store.Origin, 0, (int)store.OriginSectors) };
        foreach (var name in valid) images[name] = await ReadAsync(store.GetSnapshot(name), 0, (int)store.OriginSectors);
        int maps = 0;
        for (int i = 0; i < valid.Count; i++)
        {
            await CheckPairAsync(store, valid[i], null, images, history, exact, where);
            maps++;
            for (int j = i + 1; j < valid.Count; j++)
            {
                await CheckPairAsync(store, valid[i], valid[j], images, history, exact, where);
                maps++;
            }
        }
        return maps;
    }

    public static async Task<ChangedExtents> CheckPairAsync(SnapshotStore store, string from, string? to, Dictionary<string, byte[]> images,
        WriteHistory? history, bool exact, string where)
    {
        string what = $"{from} -> {to ?? "origin"} at {where}";
        var map = await store.GetChangedExtentsAsync(from, to).AsTask().WaitAsync(Watchdog);
        long chunkBytes = store.ChunkSectors * 512L;
        var a = images[from];
        var b = images[to ?? "origin"];
        // A full copy of A, with the reported extents of B copied over it, is B.
        var copy = (byte[])a.Clone();
        long previousEnd = -1;
        var reported = new HashSet<long>();
        foreach (var e in map.Extents)
        {
            Assert.True(e.StartSector > previousEnd, $"extents not sorted and merged: {what}");
            Assert.True(e.Sectors > 0 && e.StartSector % store.ChunkSectors == 0 && e.Sectors % store.ChunkSectors == 0, $"extent not whole chunks: {what}");
            previousEnd = e.StartSector + e.Sectors;
            Array.Copy(b, e.Offset, copy, e.Offset, e.Length);
            for (long c = e.StartSector / store.ChunkSectors; c < previousEnd / store.ChunkSectors; c++) reported.Add(c);
        }
        Assert.Equal(reported.Count, map.Chunks);
        Assert.Equal(reported.Count * chunkBytes, map.Bytes);
        if (!copy.AsSpan().SequenceEqual(b))
        {
            long bad = 0;
            while (copy[bad] == b[bad]) bad++;
            Assert.Fail($"copy of {from} plus the reported extents differs from {to ?? "origin"} at byte {bad} (chunk {bad / chunkBytes}): {what}");
        }
        if (history is not null)
        {
            var allowed = history.Allowed(from, to);
            foreach (long c in reported)
                Assert.True(allowed.Contains(c), $"chunk {c} is reported but the workload never wrote it in between: {what}");
        }
        if (exact)
        {
            for (long c = 0; c < a.Length / chunkBytes; c++)
            {
                bool differs = !a.AsSpan((int)(c * chunkBytes), (int)chunkBytes).SequenceEqual(b.AsSpan((int)(c * chunkBytes), (int)chunkBytes));
                Assert.True(differs == reported.Contains(c), $"chunk {c}: {(differs ? "differs but is not reported" : "is equal but reported")}: {what}");
            }
        }
        return map;
    }
}
