"""Where the real recorded action streams live: $VLA_SAFETY_DATA, else shared/data beside the repository."""
import os

DATA = os.environ.get('VLA_SAFETY_DATA') or os.path.abspath(
    os.path.join(os.path.dirname(__file__), '..', '..', 'shared', 'data'))
