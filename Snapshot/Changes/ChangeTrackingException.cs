using Journal;

namespace Snapshot.Changes;

/// <summary>
/// A change map that cannot be given: a snapshot being merged, a pair whose creation marks or metadata do not read back
/// as they were written, a snapshot deleted or invalidated while its map was computed. The message is one line naming
/// the COW file and the reason; there is never an empty map instead.
/// </summary>
public sealed class ChangeTrackingException : JournalException
{
    /// <summary>Creates the error.</summary>
    public ChangeTrackingException(string message, Exception? inner = null) : base(message, inner) { }
}
