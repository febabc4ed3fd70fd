using Snapshot.Changes;

namespace Snapshot;

/// <summary>Changed-block tracking, the public entry points (the work is in <see cref="ChangeTracker"/>).</summary>
public sealed partial class SnapshotStore
{
    /// <summary>
    /// The chunks where snapshot <paramref name="from"/>'s view differs from snapshot <paramref name="to"/>'s (which
    /// must be newer), or from the origin's current contents when <paramref name="to"/> is null or <c>origin</c>:
    /// sorted extents, adjacent chunks merged, with totals. Exact at chunk granularity (a chunk is reported while equal
    /// only when a write of identical data made it so); derived from the exception metadata, so it survives every crash
    /// the store survives. See <c>docs/changed-blocks.md</c>.
    /// </summary>
    /// <exception cref="Journal.JournalArgumentException">No such snapshot, or <paramref name="from"/> is newer than <paramref name="to"/>.</exception>
    /// <exception cref="SnapshotInvalidException">One of the snapshots is invalid.</exception>
    /// <exception cref="ChangeTrackingException">One is being merged, or its marks or metadata do not read back as written.</exception>
    public ValueTask<ChangedExtents> GetChangedExtentsAsync(string from, string? to = null, CancellationToken cancellationToken = default) =>
        _changes.GetAsync(from, to, cancellationToken);

    /// <summary>The changed-block tracker (hooks at snapshot create and snapshot writes).</summary>
    internal ChangeTracker Changes => _changes;
}
