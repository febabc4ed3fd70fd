using Snapshot;

namespace Journal.Tests.Campaign;

/// <summary>
/// Everything a store holds, read through the library in this process after the tools have run: the status and the
/// bytes of the origin and of every snapshot that can be read (an unfinished merge's snapshot refuses I/O). Opening
/// replays the journal when the last close was not clean, and closing leaves the store clean, exactly as a
/// <c>snapctl read</c> would.
/// </summary>
public sealed class StoreImage
{
    private StoreImage(StoreStatus status, Dictionary<string, byte[]> volumes)
    {
        Status = status;
        Volumes = volumes;
    }

    /// <summary>The status at open (after any replay).</summary>
    public StoreStatus Status { get; }

    /// <summary>The contents of <c>origin</c> and of each readable snapshot, by name.</summary>
    public IReadOnlyDictionary<string, byte[]> Volumes { get; }

    /// <summary>The status of snapshot <paramref name="name"/>, or null when the store has no such snapshot.</summary>
    public SnapshotStatus? Snapshot(string name) => Status.Snapshots.FirstOrDefault(s => s.Name == name);

    /// <summary>
    /// Compares volume <paramref name="name"/> with <paramref name="model"/> (writes stamped with <paramref name="tag"/>)
    /// and adds a line to <paramref name="problems"/> for an unreadable volume, or lines for its first wrong runs.
    /// </summary>
    public void Check(string name, VolumeModel model, uint tag, List<string> problems)
    {
        if (!Volumes.TryGetValue(name, out var data))
        {
            problems.Add($"{name}: cannot be read (status {Snapshot(name)?.ToString() ?? "missing"})");
            return;
        }
        var (count, first) = model.Check(data, tag, 5);
        if (count == 0) return;
        problems.Add($"{name}: {count} sectors wrong");
        foreach (var m in first)
            problems.Add($"  {name} {m.Sectors}: expected write {string.Join(" or ", m.Expected)}, found {m.Description}");
    }

    /// <summary>Reads the whole store in <paramref name="folder"/> (fails after two minutes: a hang is a failure).</summary>
    public static async Task<StoreImage> ReadAsync(string folder)
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromMinutes(2));
        var task = ReadCoreAsync(folder, cts.Token);
        return await task.WaitAsync(TimeSpan.FromMinutes(2.5));
    }

    private static async Task<StoreImage> ReadCoreAsync(string folder, CancellationToken ct)
    {
        var store = await SnapshotStore.OpenAsync(folder, cancellationToken: ct);
        try
        {
            var status = store.GetStatus();
            var volumes = new Dictionary<string, byte[]> { ["origin"] = await ReadVolumeAsync(store.Origin, ct) };
            foreach (var s in status.Snapshots)
                if (s.IsValid && !s.Merging)
                    volumes[s.Name] = await ReadVolumeAsync(store.GetSnapshot(s.Name), ct);
            await store.CloseAsync(ct);
            return new StoreImage(status, volumes);
        }
        catch
        {
            await store.DisposeAsync();
            throw;
        }
    }

    private static async Task<byte[]> ReadVolumeAsync(StoreVolume volume, CancellationToken ct)
    {
        var data = new byte[volume.SectorCount * SectorStamp.SectorSize];
        const int step = 1 << 20;
        for (int at = 0; at < data.Length; at += step)
        {
            int n = Math.Min(step, data.Length - at);
            await volume.ReadAsync(at / SectorStamp.SectorSize, data.AsMemory(at, n), ct);
        }
        return data;
    }
}
