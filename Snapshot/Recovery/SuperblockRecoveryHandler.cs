using Journal;
using Journal.Format;
using Journal.Recovery;
using Journal.Storage;
using Snapshot.Format;

namespace Snapshot.Metadata;

/// <summary>
/// Replays logged copies of the superblock item over the home copy read from <c>store.sb</c>.
/// </summary>
/// <remarks>
/// Recovery cases, per logged copy:
/// <list type="number">
/// <item>The copy's checkpoint LSN is at or below the home copy's <c>home_lsn</c> (or below a copy already applied):
/// the journal skips it.</item>
/// <item>An item id other than 0, a region count other than 1, a copy that does not parse (length, magic, checksum,
/// version, records) or that changes the geometry: <see cref="CorruptionException"/> naming <c>store.sb</c> and the LSN.</item>
/// <item>Otherwise it becomes the current superblock (copies come in checkpoint order, so the newest wins).</item>
/// </list>
/// <see cref="Complete"/> writes the result home (next generation, stamped with the LSN of the copy applied) and
/// flushes it, once, if any copy was applied. The same handler may see the log twice (the store's superblock pass and
/// then the full replay): the second time every copy is at or below the LSN applied and is skipped.
/// </remarks>
internal sealed class SuperblockRecoveryHandler : IItemRecoveryHandler
{
    private readonly BlockDevice _home;
    private Lsn _applied;
    private bool _dirty;

    public SuperblockRecoveryHandler(BlockDevice home, Superblock homeCopy)
    {
        _home = home;
        Current = homeCopy;
        _applied = Lsn.FromValue(homeCopy.HomeLsn);
    }

    /// <summary>The superblock: the home copy, replaced by every logged copy applied.</summary>
    public Superblock Current { get; private set; }

    /// <summary>Logged copies applied.</summary>
    public long Applied { get; private set; }

    public Lsn GetHomeLsn(ulong itemId) => _applied;

    public void Apply(ulong itemId, Lsn checkpointLsn, IReadOnlyList<ReadOnlyMemory<byte>> regions)
    {
        if (itemId != SuperblockItem.Id)
            throw new CorruptionException(_home.Name, -1, checkpointLsn, $"superblock item id {itemId}, expected {SuperblockItem.Id}");
        if (regions.Count != 1)
            throw new CorruptionException(_home.Name, -1, checkpointLsn, $"superblock item: {regions.Count} regions logged, expected 1");
        var sb = Superblock.TryParseLogged(regions[0].Span, _home.Name, out string? problem)
            ?? throw new CorruptionException(_home.Name, -1, checkpointLsn, $"logged superblock: {problem}");
        if (sb.OriginSectors != Current.OriginSectors || sb.ChunkSectors != Current.ChunkSectors)
            throw new CorruptionException(_home.Name, -1, checkpointLsn,
                $"logged superblock has origin {sb.OriginSectors} sectors, chunk {sb.ChunkSectors} sectors; the home copy has {Current.OriginSectors}, {Current.ChunkSectors}");
        // The home generation goes on from the copy on disk (it picks the copy the next write goes to).
        Current = sb with { Generation = Current.Generation, HomeLsn = Current.HomeLsn };
        _applied = checkpointLsn;
        _dirty = true;
        Applied++;
    }

    public void Complete()
    {
        if (!_dirty) return;
        var next = Current with { Generation = Current.Generation + 1, HomeLsn = _applied.Value };
        next.Write(_home);
        Current = next;
        _dirty = false;
    }
}
