using System.Buffers;
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
/// <remarks>A snapshot deleted, invalidated or merged since the context was selected makes BLOCK_STATUS fail (the map's
/// error), never answer "clean". Stateless apart from its name: safe for the concurrent requests of a connection.</remarks>
internal sealed class NbdDirtyBitmapContext(string snapshot) : INbdMetaContext
{
    /// <summary>The namespace and leaf prefix.</summary>
    public const string Prefix = "qemu:dirty-bitmap:";

    /// <summary>qemu's flag for a dirty extent.</summary>
    public const uint Dirty = 1;

    /// <summary>The snapshot the bitmap counts changes from.</summary>
    public string Snapshot { get; } = snapshot;

    public string Name => Prefix + Snapshot;

    public bool IsImmediate => false;

    public async ValueTask<int> DescribeAsync(StoreVolume volume, long offset, uint length, (uint Length, uint Flags)[] extents, int max, CancellationToken cancellationToken)
    {
        // Why we wait: the map (from the cache, or computed: see ChangeTracker). The worker holds nothing of the store.
        var map = await volume.Store.GetChangedExtentsAsync(Snapshot, volume.IsOrigin ? null : volume.Name, cancellationToken).ConfigureAwait(false);
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

    /// <inheritdoc/>
    public override string ToString() => $"NbdDirtyBitmapContext({Name})";
}
