using Journal;
using Journal.Format;
using Journal.Storage;
using Snapshot.Format;

namespace Snapshot.Metadata;

/// <summary>
/// The store superblock (geometry and snapshot list) as a journal log item. Snapshot create, delete and invalidation
/// change it and commit it through the metadata journal; its home is <c>store.sb</c>, written by the AIL with the
/// two-copy atomic scheme of <see cref="Superblock"/> and stamped with the LSN it reflects.
/// </summary>
/// <remarks>
/// <para>Logged state: one region, <see cref="Superblock.ToLogBytes"/> of the superblock as last set (header and
/// snapshot records, at most <see cref="Superblock.MaxLogBytes"/> bytes), encoded when it is set so that
/// <see cref="FormatLog"/> only copies.</para>
/// <para>Locking: <see cref="Lock"/> (async mutex) is held by a committer from <see cref="Set"/> to the end of its
/// commit (it reserves log space before taking it), so one open transaction at a time holds the item and
/// <see cref="FormatLog"/> sees a stable state; it also serialises superblock changes. The AIL's
/// <see cref="WriteBackAsync"/> only <i>tries</i> it and retries later when it is held. Nothing else is taken while
/// holding it except the store's state lock, briefly.</para>
/// </remarks>
internal sealed class SuperblockItem : LogItem
{
    /// <summary>Log item type of the superblock ("SB").</summary>
    public const ushort Type = 0x5342;

    /// <summary>Item id of the superblock (there is one per store).</summary>
    public const ulong Id = 0;

    private readonly BlockDevice _home;
    private readonly byte[] _logged = new byte[Superblock.MaxLogBytes];
    private int _loggedLength;
    private ulong _homeGeneration;

    /// <summary>An item for <paramref name="current"/>, whose home copy on <paramref name="home"/> has generation <c>current.Generation</c>.</summary>
    public SuperblockItem(BlockDevice home, Superblock current)
        : base(Type, Id)
    {
        _home = home;
        _homeGeneration = current.Generation;
        Set(current);
    }

    /// <summary>Held from <see cref="Set"/> to the end of its commit (see remarks).</summary>
    public readonly SemaphoreSlim Lock = new(1, 1);

    /// <summary>The superblock as last set (under <see cref="Lock"/>, or before the item is shared).</summary>
    public Superblock Current { get; private set; } = null!;

    /// <summary>Generation of the newest home copy written.</summary>
    public ulong HomeGeneration => Volatile.Read(ref _homeGeneration);

    /// <summary>Home copies written by <see cref="WriteBackAsync"/>.</summary>
    public long HomeWrites { get; private set; }

    /// <summary>Replaces the state to log. Caller holds <see cref="Lock"/> (or the item is not shared yet).</summary>
    public void Set(Superblock next)
    {
        next.ToLogBytes(_logged);
        _loggedLength = next.LogBytes;
        Current = next;
    }

    /// <summary>Log space one commit of the item needs at most (64 snapshots).</summary>
    public static int ReserveBytes(MetadataJournal journal) => (int)journal.EstimateLogBytes(new LogItemSize(1, Superblock.MaxLogBytes));

    public override LogItemSize GetLogSize() => new(1, _loggedLength);

    public override void FormatLog(LogVectorWriter writer)
    {
        var span = writer.AddRegion(_loggedLength);
        _logged.AsSpan(0, _loggedLength).CopyTo(span);
    }

    public override async ValueTask<bool> WriteBackAsync(Lsn lsn, CancellationToken cancellationToken)
    {
        if (!Lock.Wait(0)) return false; // a committer holds it: the AIL retries later
        try
        {
            if (IsPinned) return false;
            var next = Current with { Generation = _homeGeneration + 1, HomeLsn = lsn.Value };
            await next.WriteAsync(_home, cancellationToken).ConfigureAwait(false); // writes the other copy and flushes
            Volatile.Write(ref _homeGeneration, next.Generation);
            HomeWrites++;
            return true;
        }
        finally
        {
            Lock.Release();
        }
    }

    /// <summary>None: <see cref="WriteBackAsync"/> flushes <c>store.sb</c> itself (<see cref="Superblock.WriteAsync"/>).</summary>
    public override BlockDevice? HomeDevice => null;

    /// <inheritdoc/>
    public override string ToString() => $"SuperblockItem(home generation {HomeGeneration}, {Current})";
}
