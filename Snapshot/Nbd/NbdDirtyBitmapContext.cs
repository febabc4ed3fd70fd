using System.Buffers;
using Journal;
using Journal.Storage;
using Snapshot.Changes;

namespace Snapshot.Nbd;

/// <summary>
/// <c>qemu:dirty-bitmap:&lt;A&gt;</c>, served as qemu serves its dirty bitmaps (flag 1 = dirty, 0 = clean): on the
/// origin export, the chunks changed since snapshot A (<c>changed(A → origin)</c>); on a snapshot export B, the chunks
/// where A's view differs from B's (<c>changed(A → B)</c>, A older than B). The answer comes from the store's change map
/// (<see cref="SnapshotStore.GetChangedExtentsAsync"/>, cached while nothing it depends on changes), so its cost grows
/// with the number of exceptions, not with the size of the volume; a range is found by binary search.
/// </summary>
/// <remarks>
/// <para>The context is bound to the snapshot <i>as selected</i> (its <see cref="SnapshotState"/>, which has a store-wide
/// unique id), not to its name. A snapshot deleted, invalidated or merged since the context was selected makes
/// BLOCK_STATUS fail (the map's error, or EINVAL naming the deleted snapshot), never answer "clean" — and so does a
/// different snapshot created since under the same name: its changes are not the ones the client asked for.</para>
/// <para>Why the check after the map is enough: the map is asked for by name, and names are unique among the snapshots in
/// the list; a deleted snapshot never comes back. So if the selected snapshot is still in the list (not deleted) once the
/// map is returned, it was in the list the whole time since it was selected, and the name the map resolved named it. The
/// same holds for the snapshot export the map is taken against. <c>Deleted</c> is read under the store's state lock, for
/// one field, nothing waits under it.</para>
/// <para>Stateless apart from the snapshot it is bound to: safe for the concurrent requests of a connection.</para>
/// </remarks>
internal sealed class NbdDirtyBitmapContext(SnapshotState snapshot) : INbdMetaContext
{
    /// <summary>The namespace and leaf prefix.</summary>
    public const string Prefix = "qemu:dirty-bitmap:";

    /// <summary>qemu's flag for a dirty extent.</summary>
    public const uint Dirty = 1;

    /// <summary>The snapshot the bitmap counts changes from, as it was when the context was offered.</summary>
    internal SnapshotState State { get; } = snapshot;

    /// <summary>The name of the snapshot the bitmap counts changes from.</summary>
    public string Snapshot => State.Name;

    public string Name => Prefix + Snapshot;

    public bool IsImmediate => false;

    public async ValueTask<int> DescribeAsync(StoreVolume volume, long offset, uint length, (uint Length, uint Flags)[] extents, int max, CancellationToken cancellationToken)
    {
        ThrowIfGone(volume); // a replaced snapshot's map is not computed at all
        // Why we wait: the map (from the cache, or computed: see ChangeTracker). The worker holds nothing of the store.
        var map = await volume.Store.GetChangedExtentsAsync(Snapshot, volume.IsOrigin ? null : volume.Name, cancellationToken).ConfigureAwait(false);
        ThrowIfGone(volume); // the map named the selected snapshots only if they are still there (see the remarks)
        var stretches = ArrayPool<ChangeStretch>.Shared.Rent(max);
        try
        {
            int n = map.Describe(offset >> BlockDevice.SectorShift, length >> BlockDevice.SectorShift, stretches.AsSpan(0, max));
            for (int i = 0; i < n; i++) extents[i] = ((uint)(stretches[i].Sectors << BlockDevice.SectorShift), stretches[i].Changed ? Dirty : 0);
            return n;
        }
        finally
        {
            ArrayPool<ChangeStretch>.Shared.Return(stretches);
        }
    }

    /// <summary>
    /// Throws <see cref="JournalArgumentException"/> (EINVAL, as for a snapshot deleted without a successor) when the
    /// selected snapshot, or the snapshot export's own snapshot, has been deleted or merged since the selection, whether
    /// or not a snapshot of the same name exists now.
    /// </summary>
    private void ThrowIfGone(StoreVolume volume)
    {
        var store = volume.Store;
        var export = (volume as SnapshotVolume)?.State;
        bool selectedGone, exportGone;
        lock (store.StateLock)
        {
            selectedGone = State.Deleted;
            exportGone = export is not null && export.Deleted;
        }
        if (selectedGone) throw Gone(store, State);
        if (exportGone) throw Gone(store, export!);
    }

    private static JournalArgumentException Gone(SnapshotStore store, SnapshotState st)
    {
        bool reused = store.Catalog.Snapshots.Any(s => s.Name == st.Name);
        return new JournalArgumentException(reused
            ? $"{st.CowPath}: no snapshot named '{st.Name}' as selected (id {st.Id}): it was deleted, and the snapshot of that name now is another one; select the context again"
            : $"{st.CowPath}: no snapshot named '{st.Name}' (it was deleted)");
    }

    /// <inheritdoc/>
    public override string ToString() => $"NbdDirtyBitmapContext({Name}, id {State.Id})";
}
