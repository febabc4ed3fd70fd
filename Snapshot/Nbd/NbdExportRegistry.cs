using System.Globalization;
using System.Runtime.CompilerServices;

namespace Snapshot.Nbd;

/// <summary>One export as a client negotiated it: a volume of the store and how it is served.</summary>
/// <param name="Name">Canonical name: <c>origin</c> or the snapshot's name.</param>
/// <param name="Volume">The store volume.</param>
/// <param name="Description">One line for NBD_INFO_DESCRIPTION and NBD_OPT_LIST.</param>
/// <param name="ReadOnly">True when the server serves read-only.</param>
/// <param name="Locks">The volume's chunk-range locks, shared by every connection to it.</param>
internal sealed record NbdExport(string Name, StoreVolume Volume, string Description, bool ReadOnly, NbdRangeLocks Locks)
{
    /// <summary>Size in bytes.</summary>
    public long SizeBytes => Volume.SectorCount * 512;

    /// <summary>Chunk size in bytes (the preferred block size, at most 32 MiB).</summary>
    public int PreferredBlockBytes => (int)Math.Min((long)Volume.Store.ChunkSectors * 512, NbdServerOptions.MaxRequestBytes);
}

/// <summary>
/// The exports of a served store: <c>origin</c> (also the default export, the empty name) and every snapshot by its name,
/// looked up live in the store, so a snapshot appears in NBD_OPT_LIST as soon as its create returns. Tracks which
/// connections have each export open, and lets a snapshot removal shut an export: from <see cref="BeginRemoval"/> to
/// <see cref="EndRemoval"/> no new connection can open it.
/// </summary>
/// <remarks>Locking: <c>_lock</c> protects <c>_open</c> and <c>_closing</c>; held for dictionary work only, never across an
/// await or a store call that waits.</remarks>
internal sealed class NbdExportRegistry
{
    private readonly SnapshotStore _store;
    private readonly bool _readOnly;
    private readonly object _lock = new();
    private readonly Dictionary<string, HashSet<NbdConnection>> _open = new(StringComparer.Ordinal);
    private readonly HashSet<string> _closing = new(StringComparer.Ordinal);
    private readonly ConditionalWeakTable<StoreVolume, NbdRangeLocks> _locks = new();

    public NbdExportRegistry(SnapshotStore store, bool readOnly)
    {
        _store = store;
        _readOnly = readOnly;
    }

    /// <summary>The canonical name of <paramref name="requested"/> (the empty name is the origin).</summary>
    public static string Canonical(string requested) => requested.Length == 0 ? "origin" : requested;

    /// <summary>Every export: (name, description), the origin first, then the snapshots in creation order.</summary>
    public List<(string Name, string Description)> List()
    {
        var status = _store.GetStatus();
        var list = new List<(string, string)> { ("origin", OriginDescription()) };
        foreach (var s in status.Snapshots) list.Add((s.Name, SnapshotDescription(s)));
        return list;
    }

    /// <summary>The export named <paramref name="requested"/>, or null with the reason in <paramref name="error"/>.</summary>
    public NbdExport? Resolve(string requested, out string? error)
    {
        string name = Canonical(requested);
        string quoted = NbdLogText.Client(name); // the client's text, for the messages (logged, and sent back)
        error = null;
        lock (_lock)
        {
            if (_closing.Contains(name))
            {
                error = $"export '{quoted}' is being deleted or merged";
                return null;
            }
        }
        if (name == "origin")
            return new NbdExport(name, _store.Origin, OriginDescription(), _readOnly || _store.OriginRefusesWrites, LocksOf(_store.Origin));
        var status = _store.GetStatus().Snapshots.FirstOrDefault(s => s.Name == name);
        StoreVolume? volume = status is null ? null : _store.Snapshots.FirstOrDefault(v => v.Name == name);
        if (status is null || volume is null)
        {
            error = $"no export named '{quoted}' (exports: origin and the store's snapshots)";
            return null;
        }
        if (!status.IsValid)
        {
            error = $"snapshot '{quoted}' is {(status.Unavailable ? "unavailable" : "invalid")}: {status.InvalidReason}";
            return null;
        }
        if (status.Merging)
        {
            error = $"snapshot '{quoted}' is being merged into the origin";
            return null;
        }
        return new NbdExport(name, volume, SnapshotDescription(status), _readOnly, LocksOf(volume));
    }

    private NbdRangeLocks LocksOf(StoreVolume v) => _locks.GetValue(v, _ => new NbdRangeLocks());

    private string OriginDescription() => string.Create(CultureInfo.InvariantCulture,
        $"origin of store {_store.Folder}: {_store.OriginSectors} sectors, chunk {_store.ChunkSectors * 512} bytes");

    private string SnapshotDescription(SnapshotStatus s) => string.Create(CultureInfo.InvariantCulture,
        $"{(s.Kind == SnapshotKind.Persistent ? "persistent" : "transient")} snapshot {s.Name} of store {_store.Folder}: {s.DmStatus}");

    /// <summary>Records that <paramref name="connection"/> entered transmission on <paramref name="export"/>; false if the export is being removed.</summary>
    public bool TryOpen(NbdExport export, NbdConnection connection)
    {
        lock (_lock)
        {
            if (_closing.Contains(export.Name)) return false;
            if (!_open.TryGetValue(export.Name, out var set)) _open[export.Name] = set = new HashSet<NbdConnection>();
            set.Add(connection);
            return true;
        }
    }

    /// <summary>Records that <paramref name="connection"/> closed <paramref name="export"/>.</summary>
    public void Close(NbdExport export, NbdConnection connection)
    {
        lock (_lock)
        {
            if (_open.TryGetValue(export.Name, out var set) && set.Remove(connection) && set.Count == 0) _open.Remove(export.Name);
        }
    }

    /// <summary>Connections that have <paramref name="name"/> open now.</summary>
    public int OpenCount(string name)
    {
        lock (_lock) return _open.TryGetValue(Canonical(name), out var set) ? set.Count : 0;
    }

    /// <summary>
    /// Shuts export <paramref name="name"/> to new connections and returns the connections that have it open. False if
    /// a removal of it is already under way.
    /// </summary>
    public bool BeginRemoval(string name, out List<NbdConnection> open)
    {
        lock (_lock)
        {
            open = _open.TryGetValue(name, out var set) ? set.ToList() : [];
            return _closing.Add(name);
        }
    }

    /// <summary>Opens <paramref name="name"/> to new connections again (the removal finished or failed).</summary>
    public void EndRemoval(string name)
    {
        lock (_lock) _closing.Remove(name);
    }
}
