public enum GuestImagePlaceholder {}
