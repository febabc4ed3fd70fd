namespace Snapshot.Nbd;

/// <summary>
/// A metadata context the server can answer NBD_CMD_BLOCK_STATUS for: <c>base:allocation</c>, and one
/// <c>qemu:dirty-bitmap:&lt;snapshot&gt;</c> per snapshot whose changes the export can list
/// (<see cref="NbdDirtyBitmapContext"/>).
/// </summary>
internal interface INbdMetaContext
{
    /// <summary>Full name, "namespace:leaf".</summary>
    string Name { get; }

    /// <summary>
    /// True when <see cref="DescribeAsync"/> always completes at once, without I/O: the reader answers such a request
    /// itself. Otherwise the request goes to a worker.
    /// </summary>
    bool IsImmediate { get; }

    /// <summary>
    /// Describes [offset, offset + length) of <paramref name="volume"/> as extents (length, flags) into
    /// <paramref name="extents"/> (at most <paramref name="max"/> of them), starting at the offset, consecutive; returns
    /// how many were written (at least one when <paramref name="length"/> is positive). The lengths are whole sectors and
    /// their sum is at most <paramref name="length"/>.
    /// </summary>
    ValueTask<int> DescribeAsync(StoreVolume volume, long offset, uint length, (uint Length, uint Flags)[] extents, int max, CancellationToken cancellationToken);
}

/// <summary>
/// <c>base:allocation</c> as the store knows it: every sector of every volume is allocated — the origin image is a
/// fully written file, TRIM frees nothing (a snapshot may share the data), and a snapshot chunk without an exception
/// reads the origin's data, not a hole — and the store does not know which chunks hold zeros without reading them. So
/// one extent with flags 0 (allocated, contents not known to be zero) covers the whole request, which is always a
/// correct answer under the protocol. (Chunks that changed are what <c>qemu:dirty-bitmap:</c> contexts give.)
/// </summary>
internal sealed class BaseAllocationContext : INbdMetaContext
{
    public static readonly BaseAllocationContext Instance = new();

    public string Name => NbdProtocol.BaseAllocation;

    public bool IsImmediate => true;

    public ValueTask<int> DescribeAsync(StoreVolume volume, long offset, uint length, (uint Length, uint Flags)[] extents, int max, CancellationToken cancellationToken)
    {
        extents[0] = (length, 0);
        return new ValueTask<int>(1);
    }
}

/// <summary>
/// The metadata contexts an export offers, and the query rules of NBD_OPT_LIST_META_CONTEXT and
/// NBD_OPT_SET_META_CONTEXT: a query is "namespace:leaf"; with LIST, a query ending in ':' ("base:", "qemu:",
/// "qemu:dirty-bitmap:") lists every context whose name starts with it; unknown namespaces and leaves are ignored (not an
/// error); a query with no colon is invalid; a dirty bitmap naming a snapshot that exists but whose changes the export
/// cannot list gets an error reply (<see cref="WhyNot"/>).
/// </summary>
internal static class NbdMetaContexts
{
    /// <summary>
    /// The contexts <paramref name="volume"/> offers: <c>base:allocation</c>, then <c>qemu:dirty-bitmap:&lt;S&gt;</c> for
    /// every valid snapshot S not being merged — on the origin every one (changes since S), on a snapshot export B the
    /// ones older than B (changes from S to B).
    /// </summary>
    public static IReadOnlyList<INbdMetaContext> For(StoreVolume volume)
    {
        var list = new List<INbdMetaContext> { BaseAllocationContext.Instance };
        var store = volume.Store;
        // Each bitmap is bound to the snapshot itself, not its name (NbdDirtyBitmapContext). The state lock is held to
        // read the list and each snapshot's validity together: in-memory work, nothing waits under it.
        lock (store.StateLock)
        {
            foreach (var s in store.Catalog.SnapshotsUnsafe) // creation order: the ones before B are older
            {
                if (!volume.IsOrigin && s.Name == volume.Name) break;
                if (s.IsValid && !s.Merging) list.Add(new NbdDirtyBitmapContext(s));
            }
        }
        return list;
    }

    /// <summary>
    /// Why <paramref name="query"/>, a <c>qemu:dirty-bitmap:</c> name <see cref="For"/> did not offer, cannot be served on
    /// <paramref name="volume"/> although its snapshot exists (not older, invalid, being merged); null when there is no
    /// such snapshot (the query is then ignored, as qemu ignores an unknown bitmap) or it is not a dirty bitmap.
    /// </summary>
    public static string? WhyNot(StoreVolume volume, string query)
    {
        if (!query.StartsWith(NbdDirtyBitmapContext.Prefix, StringComparison.Ordinal)) return null;
        string name = query[NbdDirtyBitmapContext.Prefix.Length..];
        var all = volume.Store.GetStatus().Snapshots;
        int at = -1;
        for (int i = 0; i < all.Count; i++) if (all[i].Name == name) at = i;
        if (at < 0) return null;
        var s = all[at];
        if (!s.IsValid) return $"{query}: snapshot '{name}' is {(s.Unavailable ? "unavailable" : "invalid")} ({s.InvalidReason})";
        if (s.Merging) return $"{query}: snapshot '{name}' is being merged into the origin";
        if (!volume.IsOrigin)
        {
            int self = -1;
            for (int i = 0; i < all.Count; i++) if (all[i].Name == volume.Name) self = i;
            if (at >= self) return $"{query}: snapshot '{name}' is not older than export '{volume.Name}' (on a snapshot export, a bitmap lists the changes from an older snapshot to it)";
        }
        return null;
    }

    /// <summary>True when <paramref name="query"/> is syntactically a context query (a non-empty namespace and a colon).</summary>
    public static bool IsWellFormed(string query)
    {
        int colon = query.IndexOf(':');
        return colon > 0;
    }

    /// <summary>The contexts of <paramref name="available"/> that <paramref name="query"/> names (LIST allows a prefix ending in ':' as a wildcard).</summary>
    public static IEnumerable<INbdMetaContext> Match(IReadOnlyList<INbdMetaContext> available, string query, bool list)
    {
        bool wildcard = query.EndsWith(':');
        foreach (var c in available)
        {
            if (wildcard)
            {
                if (list && c.Name.StartsWith(query, StringComparison.Ordinal)) yield return c;
            }
            else if (c.Name == query)
            {
                yield return c;
            }
        }
    }
}
