using System.Buffers;
using System.Runtime.CompilerServices;
using Journal.Storage;
using Snapshot.Exceptions;
using Snapshot.Format;

namespace Snapshot.Commit;

/// <summary>
/// Direct-area mode, one COW file: the metadata areas with entries not yet written home, and the one entries are
/// appended to now. A commit appends, rewrites each changed area in place (the whole area chunk, as dm-snapshot does;
/// only the changed sectors for chunks over 64 KiB) and flushes.
/// </summary>
/// <remarks>Locking: <c>_lock</c> (leaf monitor) protects the areas; held for in-memory work only, never across I/O.</remarks>
internal sealed class AreaMetadata : CowMetadata
{
    /// <summary>Largest area rewritten whole.</summary>
    private const int WholeAreaWriteLimit = 64 * 1024;

    private readonly PersistentExceptionStore _store;
    private readonly object _lock = new();
    private readonly Dictionary<long, MetadataArea> _areas = new();
    private MetadataArea _current;
    private readonly List<(long Sector, byte[] Data, int Bytes)> _writes = new(); // CommitAsync's own (one round at a time)

    public AreaMetadata(PersistentExceptionStore store, MetadataArea current)
    {
        _store = store;
        current.HomeCount = current.Count;
        _current = current;
        _areas[current.Index] = current;
    }

    public override long CurrentArea { get { lock (_lock) return _current.Index; } }

    public override long EntryCount { get { lock (_lock) return _current.Index * _store.Layout.ExceptionsPerArea + _current.Count; } }

    /// <summary>Appends the entries, writes every area they changed home and flushes: durable when it returns.</summary>
    /// <remarks>
    /// One call at a time (the pipeline commits one round at a time). The area images come from the shared array pool
    /// and its state machine from a pool, so a commit allocates nothing but a new area's entries.
    /// </remarks>
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    public async ValueTask CommitAsync(List<PendingException> items, CancellationToken cancellationToken)
    {
        var writes = _writes;
        writes.Clear();
        var layout = _store.Layout;
        lock (_lock)
        {
            foreach (var pe in items)
            {
                var area = _current;
                area.Append(new DiskException(pe.OldChunk, pe.NewChunk));
                if (area.IsFull)
                {
                    _current = new MetadataArea(area.Index + 1, layout.AreaChunk(area.Index + 1), layout.ExceptionsPerArea);
                    _areas[_current.Index] = _current;
                }
            }
            List<long>? done = null;
            foreach (var area in _areas.Values)
            {
                if (area.HomeCount < area.Count)
                {
                    const int perSector = BlockDevice.SectorSize / DiskException.Size;
                    bool whole = layout.ChunkBytes <= WholeAreaWriteLimit;
                    int firstSector = whole ? 0 : area.HomeCount / perSector;
                    int endSector = whole ? layout.ChunkSectors : (area.Count + perSector - 1) / perSector;
                    int bytes = (endSector - firstSector) * BlockDevice.SectorSize;
                    var data = ArrayPool<byte>.Shared.Rent(bytes);
                    int formatted = (area.Count - firstSector * perSector) * DiskException.Size;
                    area.Format(firstSector * perSector, area.Count, data);
                    data.AsSpan(formatted, bytes - formatted).Clear(); // the rest of the area reads as zeros (a zero entry ends it)
                    writes.Add((layout.ChunkToSector(area.Chunk) + firstSector, data, bytes));
                    area.HomeCount = area.Count;
                }
                if (area.IsFull && area != _current) (done ??= []).Add(area.Index);
            }
            if (done is not null) foreach (long i in done) _areas.Remove(i);
        }
        try
        {
            foreach (var (sector, data, bytes) in writes) await _store.Cow.WriteAsync(sector, data.AsMemory(0, bytes), cancellationToken).ConfigureAwait(false);
        }
        finally
        {
            foreach (var (_, data, _) in writes) ArrayPool<byte>.Shared.Return(data);
            writes.Clear();
        }
        await _store.Cow.FlushAsync(cancellationToken).ConfigureAwait(false);
    }

    /// <inheritdoc/>
    public override string ToString() => $"AreaMetadata({_store.Cow.Name}, current area {_current.Index})";
}
