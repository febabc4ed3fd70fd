namespace Snapshot.Nbd;

/// <summary>
/// A metadata context the server can answer NBD_CMD_BLOCK_STATUS for (<c>base:allocation</c> today; changed-block
/// tracking will add <c>qemu:dirty-bitmap:&lt;name&gt;</c> contexts, one per bitmap, through the same seam).
/// </summary>
internal interface INbdMetaContext
{
    /// <summary>Full name, "namespace:leaf".</summary>
    string Name { get; }

    /// <summary>
    /// Describes [offset, offset + length) of <paramref name="volume"/> as extents (length, flags) into
    /// <paramref name="extents"/>, starting at the offset, consecutive; returns how many were written (at least one).
    /// The lengths are whole sectors and their sum is at most <paramref name="length"/>.
    /// </summary>
    int Describe(StoreVolume volume, long offset, uint length, Span<(uint Length, uint Flags)> extents);
}

/// <summary>
/// <c>base:allocation</c> as the store knows it today: every sector of every volume is allocated (the origin image is a
/// fully written file; a snapshot reads its COW chunk or the origin), so one extent with flags 0 (allocated, contents
/// not known to be zero) covers the whole request. This is always a correct answer under the protocol.
/// </summary>
internal sealed class BaseAllocationContext : INbdMetaContext
{
    public static readonly BaseAllocationContext Instance = new();

    public string Name => NbdProtocol.BaseAllocation;

    public int Describe(StoreVolume volume, long offset, uint length, Span<(uint Length, uint Flags)> extents)
    {
        extents[0] = (length, 0);
        return 1;
    }
}

/// <summary>
/// The metadata contexts an export offers, and the query rules of NBD_OPT_LIST_META_CONTEXT and
/// NBD_OPT_SET_META_CONTEXT: a query is "namespace:leaf"; "base:" lists every <c>base</c> context (LIST only);
/// unknown namespaces and leaves are ignored (not an error); a query with no colon is invalid.
/// </summary>
internal static class NbdMetaContexts
{
    /// <summary>The contexts <paramref name="volume"/> offers (the same for every volume today).</summary>
    public static IReadOnlyList<INbdMetaContext> For(StoreVolume volume)
    {
        _ = volume;
        return s_base;
    }

    private static readonly INbdMetaContext[] s_base = [BaseAllocationContext.Instance];

    /// <summary>True when <paramref name="query"/> is syntactically a context query (a non-empty namespace and a colon).</summary>
    public static bool IsWellFormed(string query)
    {
        int colon = query.IndexOf(':');
        return colon > 0;
    }

    /// <summary>The contexts of <paramref name="available"/> that <paramref name="query"/> names (LIST allows "ns:" as a wildcard).</summary>
    public static IEnumerable<INbdMetaContext> Match(IReadOnlyList<INbdMetaContext> available, string query, bool list)
    {
        int colon = query.IndexOf(':');
        string ns = query[..(colon + 1)];
        bool wildcard = colon == query.Length - 1;
        foreach (var c in available)
        {
            if (wildcard)
            {
                if (list && c.Name.StartsWith(ns, StringComparison.Ordinal)) yield return c;
            }
            else if (c.Name == query)
            {
                yield return c;
            }
        }
    }
}
