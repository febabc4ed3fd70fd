using Journal.Storage;
using Snapshot.Exceptions;
using Snapshot.Format;
using Snapshot.Metadata;

namespace Snapshot.Changes;

/// <summary>
/// Reads the first <c>n</c> exception entries of a persistent COW file in commit order: the metadata areas on disk,
/// with the segments the journal has not yet written home taken from memory (journal mode). The cost is proportional
/// to <c>n</c> (16 bytes of metadata per entry, read in pieces of up to 1 MiB), never to the size of the volume.
/// </summary>
/// <remarks>
/// <para>Why it is consistent while the store runs: entries are append-only and never change once appended. The
/// in-memory segments are collected <i>before</i> the disk is read; a segment not in that list was wholly home (written
/// and flushed) already, so its disk copy is complete, and a segment in it is read from memory, where every entry
/// below its count stays as it was appended. Entries below <c>n</c> were all appended before the reader was asked for
/// them (<c>n</c> is a creation mark), so none is being written while they are read.</para>
/// <para>Every entry read is checked as the open path checks it (a data chunk of the file as new chunk, an old chunk
/// inside the origin); a bad one is a <see cref="ChangeTrackingException"/> naming the file and the entry.</para>
/// </remarks>
internal static class EntryOrderReader
{
    private const int MaxReadBytes = 1 << 20;

    /// <summary>The old chunks of entries <c>[0, n)</c>, in commit order, and the metadata bytes read from disk.</summary>
    public static async ValueTask<(ulong[] OldChunks, long BytesRead)> ReadAsync(PersistentExceptionStore store, long n, long originChunks,
        CancellationToken cancellationToken)
    {
        var result = new ulong[n];
        if (n == 0) return (result, 0);
        var live = new List<AreaSegmentItem>();
        store.Metadata.CollectSegmentsInMemory(live); // first: see the remarks
        var inMemory = new Dictionary<long, AreaSegmentItem>(live.Count);
        foreach (var seg in live) inMemory[seg.Segment] = seg;

        var layout = store.Layout;
        int perSegment = store.SegmentEntries;
        long segments = (n + perSegment - 1) / perSegment;
        long fileChunks = store.Cow.SectorCount / layout.ChunkSectors;
        long bytesRead = 0;
        byte[]? buffer = null;
        long seg0 = 0;
        while (seg0 < segments)
        {
            if (inMemory.TryGetValue(seg0, out var item))
            {
                int want = (int)Math.Min(perSegment, n - seg0 * perSegment);
                if (item.Count < want)
                    throw new ChangeTrackingException($"{store.Cow.Name}: metadata segment {seg0} holds {item.Count} entries in memory, the creation marks count {want}");
                for (int k = 0; k < want; k++) Check(store, item.Entries[k], seg0 * perSegment + k, originChunks, fileChunks, result);
                seg0++;
                continue;
            }
            // A stretch of home segments inside one area: contiguous on disk, read in one piece (up to 1 MiB).
            long area = seg0 / store.SegmentsPerArea;
            long seg1 = seg0 + 1;
            while (seg1 < segments && seg1 / store.SegmentsPerArea == area && !inMemory.ContainsKey(seg1)
                && (seg1 - seg0 + 1) * perSegment * DiskException.Size <= MaxReadBytes) seg1++;
            long firstEntry = seg0 * perSegment;
            long entries = Math.Min(seg1 * perSegment, n) - firstEntry;
            int bytes = (int)((entries * DiskException.Size + BlockDevice.SectorSize - 1) / BlockDevice.SectorSize * BlockDevice.SectorSize);
            if (buffer is null || buffer.Length < bytes) buffer = new byte[Math.Max(bytes, Math.Min(MaxReadBytes, 64 * 1024))];
            long sector = store.SegmentHomeSector(seg0);
            if (sector + bytes / BlockDevice.SectorSize > store.Cow.SectorCount)
                throw new ChangeTrackingException($"{store.Cow.Name}: metadata of entries {firstEntry}..{firstEntry + entries - 1} lies past the end of the file");
            // Why we wait: the read of the stretch. The caller holds nothing.
            await store.Cow.ReadAsync(sector, buffer.AsMemory(0, bytes), cancellationToken).ConfigureAwait(false);
            bytesRead += bytes;
            for (long k = 0; k < entries; k++)
                Check(store, DiskException.Read(buffer.AsSpan((int)(k * DiskException.Size))), firstEntry + k, originChunks, fileChunks, result);
            seg0 = seg1;
        }
        return (result, bytesRead);
    }

    private static void Check(PersistentExceptionStore store, DiskException e, long index, long originChunks, long fileChunks, ulong[] result)
    {
        var layout = store.Layout;
        if (e.IsTerminator || e.NewChunk >= (ulong)fileChunks || layout.IsMetadataChunk(e.NewChunk) || e.OldChunk >= (ulong)originChunks)
            throw new ChangeTrackingException(
                $"{store.Cow.Name}: exception entry {index} (area {index / layout.ExceptionsPerArea}) reads back as old_chunk {e.OldChunk} -> new_chunk {e.NewChunk}, which no commit writes (the creation marks count it as committed)");
        result[index] = e.OldChunk;
    }
}
