using Journal;
using Journal.Format;
using Journal.Recovery;
using Journal.Storage;
using Snapshot.Format;

namespace Snapshot.Recovery;

/// <summary>
/// Replays logged copies of the superblock item over the home copy read from <c>store.sb</c> (case 5 of
/// <see cref="StoreRecovery"/>); its <see cref="Complete"/> writes the result home (case 8).
/// </summary>
/// <remarks>
/// Per logged copy, in checkpoint order (the journal has already skipped copies at or below <see cref="GetHomeLsn"/>,
/// and <see cref="StoreLogItems"/> has already validated every copy in the log):
/// <list type="number">
/// <item>The copy becomes the current superblock (the newest wins), keeping the home copy's generation (which picks
/// the copy of <c>store.sb</c> the next write goes to); later copies compare against its LSN.</item>
/// <item><see cref="Complete"/> writes the result home, once, if any copy was applied: next generation, stamped with the
/// LSN of the copy applied, flushed.</item>
/// </list>
/// </remarks>
internal sealed class SuperblockRecoveryHandler : IItemRecoveryHandler
{
    private readonly BlockDevice _home;
    private readonly string _logName;
    private readonly Dictionary<Lsn, ulong> _sequences = new();
    private Lsn _applied;
    private bool _dirty;

    /// <param name="home">The device of <c>store.sb</c>.</param>
    /// <param name="homeCopy">The superblock read from it.</param>
    /// <param name="log">The scanned log (to name the checkpoint of a copy in errors).</param>
    public SuperblockRecoveryHandler(BlockDevice home, Superblock homeCopy, RecoveredLog log)
    {
        _home = home;
        _logName = log.Name;
        foreach (var c in log.Checkpoints) _sequences[c.StartLsn] = c.Sequence;
        Current = homeCopy;
        _applied = Lsn.FromValue(homeCopy.HomeLsn);
    }

    /// <summary>The superblock: the home copy, replaced by every logged copy applied.</summary>
    public Superblock Current { get; private set; }

    /// <summary>Logged copies applied.</summary>
    public long Applied { get; private set; }

    /// <summary>The LSN of the newest copy applied, or the home copy's.</summary>
    public Lsn AppliedLsn => _applied;

    public Lsn GetHomeLsn(ulong itemId) => _applied;

    public void Apply(ulong itemId, Lsn checkpointLsn, IReadOnlyList<ReadOnlyMemory<byte>> regions)
    {
        var sb = StoreLogItems.DecodeSuperblock(_logName, checkpointLsn, _sequences.GetValueOrDefault(checkpointLsn), itemId, regions, Current);
        // Case 1: the home generation goes on from the copy on disk.
        Current = sb with { Generation = Current.Generation, HomeLsn = Current.HomeLsn };
        _applied = checkpointLsn;
        _dirty = true;
        Applied++;
    }

    public void Complete()
    {
        if (!_dirty) return;
        var next = Current with { Generation = Current.Generation + 1, HomeLsn = _applied.Value };
        next.Write(_home);   // case 2
        Current = next;
        _dirty = false;
    }
}
